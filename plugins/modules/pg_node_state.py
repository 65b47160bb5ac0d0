#!/usr/bin/python
# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
module: pg_node_state
short_description: What a PostgreSQL node really is, read on the node itself, against the inventory
version_added: 0.2.0
description:
  - Reads, on the node, whether a cluster exists (C(pg_controldata)), its system identifier,
    timeline and state, whether the server runs and is in recovery, how many user databases it
    holds, whether it is marked a standby (C(standby.signal)) or fenced, and the start guard's last
    verdict.
  - With O(expected_role) it also says whether converging the node in that role is consistent
    with what it is (a stale inventory after a failover is not), with one sentence saying what the
    inventory must say; the postgresql role's C(topology) entry point asserts it before any change.
  - Read-only; never changes anything. Runs as root (it reads the data directory and connects as
    the postgres OS user over the local socket).
options:
  data_dir:
    description: The cluster's data directory.
    type: path
    required: true
  pg_controldata:
    description: Path of the C(pg_controldata) binary of the cluster's version.
    type: path
    required: true
  port:
    description: Port (selects the local socket).
    type: int
    default: 5432
  fence_file:
    description: The start guard's fence mark (present means fenced, even when empty).
    type: path
  guard_state:
    description: The start guard's last state (JSON).
    type: path
  expected_role:
    description: The role the inventory gives this node; omit to only read the state.
    type: str
    choices: [primary, replica]
  primary_name:
    description: Inventory name of the primary, for the message.
    type: str
  name:
    description: This node's inventory name, for the message (default the host name).
    type: str
extends_documentation_fragment:
  - rehab.scale.read_only
author:
  - rehab-scale maintainers
"""

EXAMPLES = r"""
- name: Refuse when the node contradicts the inventory
  rehab.scale.pg_node_state:
    data_dir: /var/lib/postgresql/15/main
    pg_controldata: /usr/lib/postgresql/15/bin/pg_controldata
    fence_file: /var/lib/postgresql/15/main.guard/fenced
    guard_state: /var/lib/postgresql/15/main.guard/state.json
    expected_role: "{{ 'primary' if inventory_hostname in groups['pg_primary'] else 'replica' }}"
  register: state
  failed_when: not state.inventory_ok
"""

RETURN = r"""
state:
  description:
    - initialized, running, in_recovery, user_databases, standby_signal, fenced (the fence reason
      or null), guard (the guard's last state or null), system_identifier, timeline, cluster_state.
  returned: always
  type: dict
  sample: {"initialized": true, "running": false, "in_recovery": null, "user_databases": null,
           "standby_signal": false, "fenced": "failover at 2026-11-27T14:01:02Z",
           "system_identifier": "7301234567890123456", "timeline": 1, "cluster_state": "in production"}
inventory_ok:
  description: Converging the node as O(expected_role) is consistent (true without O(expected_role)).
  returned: always
  type: bool
  sample: false
message:
  description: One sentence; on a contradiction it names what the inventory must say.
  returned: always
  type: str
  sample: "pg2 accepts writes and holds 1 database(s), but the inventory lists it under pg_replicas ..."
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rehab.scale.plugins.module_utils.pg_failover import (
    inventory_verdict,
    parse_controldata,
    read_fence,
)

ARGUMENT_SPEC = {
    "data_dir": {"type": "path", "required": True},
    "pg_controldata": {"type": "path", "required": True},
    "port": {"type": "int", "default": 5432},
    "fence_file": {"type": "path"},
    "guard_state": {"type": "path"},
    "expected_role": {"type": "str", "choices": ["primary", "replica"]},
    "primary_name": {"type": "str"},
    "name": {"type": "str"},
}

SQL = "SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres')"


def read_state(params, run):
    data_dir, controldata = params["data_dir"], params["pg_controldata"]
    state = {"initialized": os.path.exists(os.path.join(data_dir, "PG_VERSION")), "running": False}
    state["standby_signal"] = os.path.exists(os.path.join(data_dir, "standby.signal"))
    state["fenced"] = read_fence(params["fence_file"]) if params["fence_file"] else None
    try:
        with open(params["guard_state"] or "", encoding="utf-8") as handle:
            state["guard"] = json.load(handle)
    except (OSError, ValueError):
        state["guard"] = None
    state.update(in_recovery=None, user_databases=None, system_identifier=None, timeline=None, cluster_state=None)
    if not state["initialized"]:
        return state
    rc, out, _ = run([controldata, data_dir])
    if rc == 0:
        control = parse_controldata(out)
        state.update(
            system_identifier=control["system_identifier"],
            timeline=control["timeline"],
            cluster_state=control["state"],
        )
    rc, out, _ = run(
        ["runuser", "-u", "postgres", "--", "psql", "-X", "-p", str(params["port"]), "-d", "postgres", "-Atc", SQL]
    )
    if rc == 0 and "|" in out:
        recovery, databases = out.strip().split("|")
        state.update(running=True, in_recovery=recovery == "t", user_databases=int(databases))
    return state


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)

    def run(argv):
        try:
            return module.run_command(argv)
        except OSError as exc:  # pg_controldata or psql not installed yet
            return 127, "", str(exc)

    # Read-only: check mode reads exactly the same way.
    state = read_state(module.params, run)
    ok, message = True, "state read"
    if module.params["expected_role"]:
        ok, message = inventory_verdict(
            module.params["name"] or os.uname().nodename,
            module.params["expected_role"],
            state,
            module.params["primary_name"],
        )
    module.exit_json(changed=False, state=state, inventory_ok=ok, message=message)


if __name__ == "__main__":
    main()
