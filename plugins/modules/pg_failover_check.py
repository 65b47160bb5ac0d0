#!/usr/bin/python
# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
module: pg_failover_check
short_description: Decide whether a PostgreSQL replica can be promoted safely, and which one
version_added: 0.1.0
description:
  - Connects to every node given, all at once, and reports for each its status (C(up), C(down) when
    no server answered, as with a refused connection, a timeout or no route; C(unknown) when a
    server answered but could not be classified, as with a refused login, too many clients or a
    statement timeout), role, system
    identifier, timeline, current, received and replayed LSN, replay delay, how long ago it heard
    from its primary, and the error.
  - Only nodes with the cluster's system identifier (O(system_identifier), else the one most nodes
    share) count; others are reported as foreign. A node alive with an unknown role blocks
    promotion (it may be a primary).
  - Returns the primary (or null), every node accepting writes (more than one means split brain),
    the replicas ranked for promotion (highest received LSN, then replayed LSN, then priority), the
    recommended one, whether promoting it is safe, and one reason per rule that decided.
  - In O(mode=failover) it is unsafe while any node still accepts writes; in O(mode=switchover) the
    primary must be healthy and the candidate fully caught up; it is unsafe when the best candidate
    lags past O(max_lag_bytes), and on split brain.
  - In O(mode=failover) it is also unsafe while any replica heard from its primary less than
    O(heard_bound_seconds) ago (the primary is alive for someone, even if the control node cannot
    reach it). When that is the only blocker it probes again for up to O(wait_seconds).
  - With synchronous replication (O(sync_standbys), O(sync_num)) it is safe only when enough sync
    standbys are reachable that the recommended one certainly holds every acknowledged commit.
  - Read-only; never changes anything.
options:
  nodes:
    description: The PostgreSQL nodes to probe.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Node name used in the result (the inventory hostname).
        type: str
        required: true
      host:
        description: Address to connect to.
        type: str
        required: true
      port:
        description: PostgreSQL port.
        type: int
        default: 5432
      priority:
        description: Tie-breaker between equally advanced replicas; higher is preferred.
        type: int
        default: 100
      skip:
        description:
          - Do not connect; count the node as down (on-call confirmed it dead, so probing it again
            would only cost a connect timeout).
        type: bool
        default: false
  login_user:
    description: Role to connect as; needs C(pg_monitor) or superuser.
    type: str
    default: postgres
  login_password:
    description: Its password.
    type: str
  login_db:
    description: Database to connect to.
    type: str
    default: postgres
  ssl_mode:
    description:
      - libpq's sslmode for every probe. C(verify-full) checks each node's certificate against
        I(ssl_root_cert) and the address the node is probed at.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
    default: prefer
  ssl_root_cert:
    description: CA certificate (on the host running the module) that node certificates chain to.
    type: path
  connect_timeout:
    description: Seconds to wait for each node before calling it down (nodes are probed concurrently).
    type: int
    default: 2
  system_identifier:
    description:
      - The cluster's system identifier; nodes with another one are foreign.
      - Empty to take the one most classified nodes share.
    type: str
  heard_bound_seconds:
    description:
      - In failover mode, refuse while a replica heard from its primary less than this many seconds ago.
      - 0 turns the rule off.
    type: float
    default: 4
  stale_bound_seconds:
    description:
      - A replica whose last news from the primary is older than the freshest survivor's by more than
        this (and that holds less WAL) is stale.
    type: float
    default: 30
  wait_seconds:
    description:
      - Probe again for up to this long while waiting may make it safe (a replica heard from its
        primary recently; the candidate has not caught up yet).
    type: float
    default: 0
  target:
    description:
      - Consider only this replica for promotion (a switchover to a named node). In failover mode
        it must hold as much WAL as the best candidate.
    type: str
  mode:
    description: C(failover) when the primary is lost, C(switchover) for a planned change.
    type: str
    choices: [failover, switchover]
    default: failover
  max_lag_bytes:
    description: Largest lag (unreceived plus unreplayed WAL) of the best candidate that is still safe.
    type: int
    default: 16777216
  sync_standbys:
    description: Names of the synchronous standbys (from C(synchronous_standby_names)); empty when asynchronous.
    type: list
    elements: str
    default: []
  sync_members:
    description:
      - Every node named in C(synchronous_standby_names) when that list names all nodes, the lost
        primary among them (as the postgresql role writes it); its standbys are the others. Use
        instead of O(sync_standbys).
    type: list
    elements: str
    default: []
  sync_num:
    description: The quorum k of C(ANY k (...)).
    type: int
    default: 1
requirements:
  - psycopg2 on the host the module runs on
extends_documentation_fragment:
  - rehab.scale.read_only
author:
  - rehab-scale maintainers
"""

EXAMPLES = r"""
- name: Is it safe to fail over, and to whom?
  rehab.scale.pg_failover_check:
    nodes:
      - {name: pg1, host: 10.0.1.21}
      - {name: pg2, host: 10.0.1.22}
      - {name: pg3, host: 10.0.1.23}
    login_user: rehab_monitor
    login_password: "{{ vault_pg_monitor_password }}"
    mode: failover
    sync_standbys: [pg2, pg3]
  register: check
  delegate_to: localhost

- name: Refuse when unsafe
  ansible.builtin.assert:
    that: check.safe_to_promote
    fail_msg: "{{ check.reasons | join('; ') }}"
"""

RETURN = r"""
nodes:
  description: What was seen on each node.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "pg2", "reachable": true, "status": "up", "role": "replica", "timeline": 1,
            "system_identifier": "7301234567890123456", "current_lsn": null,
            "received_lsn": "0/3000148", "replayed_lsn": "0/3000148", "replay_delay_seconds": 0.4,
            "heard_seconds_ago": 0.8, "priority": 100, "error": null}]
primary:
  description: The one node accepting writes, null when none or more than one.
  returned: always
  type: str
  sample: pg1
primaries:
  description: Every reachable node accepting writes; more than one means split brain.
  returned: always
  type: list
  elements: str
  sample: ["pg1"]
split_brain:
  description: More than one node accepts writes.
  returned: always
  type: bool
  sample: false
candidates:
  description:
    - Reachable replicas in promotion order, each with name, received_lsn, replayed_lsn, timeline,
      priority, lag_bytes, unreceived_bytes, unreplayed_bytes and replay_delay_seconds.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "pg2", "lag_bytes": 0}]
recommended:
  description: The replica to promote (the first candidate), null when there is none.
  returned: always
  type: str
  sample: pg2
safe_to_promote:
  description: Every rule allows promoting RV(recommended) now.
  returned: always
  type: bool
  sample: true
mode:
  description: The mode the rules were applied for.
  returned: always
  type: str
  sample: failover
system_identifier:
  description: The cluster's system identifier the decision used (null when no node was classified).
  returned: always
  type: str
  sample: "7301234567890123456"
foreign:
  description: Nodes with another system identifier, ignored.
  returned: always
  type: list
  elements: str
  sample: []
stale:
  description: Replicas left out as stale (see O(stale_bound_seconds)).
  returned: always
  type: list
  elements: str
  sample: []
down:
  description: Nodes where no server answered.
  returned: always
  type: list
  elements: str
  sample: ["pg1"]
unknown:
  description: Nodes alive whose role could not be read (each one's error is in RV(nodes)).
  returned: always
  type: list
  elements: str
  sample: []
waiting_may_help:
  description: Unsafe only for reasons that may pass (a replica heard from its primary recently, lag).
  returned: always
  type: bool
  sample: false
waited_seconds:
  description: How long the module probed again before answering.
  returned: always
  type: float
  sample: 1.5
reasons:
  description: One human-readable line per rule that decided, in order.
  returned: always
  type: list
  elements: str
  sample: ["down: pg1 (timeout expired)", "best candidate pg2: ...", "safe to promote pg2 (failover)"]
"""

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rehab.scale.plugins.module_utils.pg_failover import (
    MODES,
    FailoverInputError,
    decide,
    probe_all,
    psycopg2_connector,
    report,
)

try:
    import psycopg2

    HAS_PSYCOPG2 = True
except ImportError:  # pragma: no cover - depends on the host
    HAS_PSYCOPG2 = False

ARGUMENT_SPEC = {
    "nodes": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "name": {"type": "str", "required": True},
            "host": {"type": "str", "required": True},
            "port": {"type": "int", "default": 5432},
            "priority": {"type": "int", "default": 100},
            "skip": {"type": "bool", "default": False},
        },
    },
    "login_user": {"type": "str", "default": "postgres"},
    "login_password": {"type": "str", "no_log": True},
    "login_db": {"type": "str", "default": "postgres"},
    "ssl_mode": {
        "type": "str",
        "choices": ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"],
        "default": "prefer",
    },
    "ssl_root_cert": {"type": "path"},
    "connect_timeout": {"type": "int", "default": 2},
    "system_identifier": {"type": "str"},
    "heard_bound_seconds": {"type": "float", "default": 4},
    "stale_bound_seconds": {"type": "float", "default": 30},
    "wait_seconds": {"type": "float", "default": 0},
    "target": {"type": "str"},
    "mode": {"type": "str", "choices": list(MODES), "default": "failover"},
    "max_lag_bytes": {"type": "int", "default": 16 * 1024 * 1024},
    "sync_standbys": {"type": "list", "elements": "str", "default": []},
    "sync_num": {"type": "int", "default": 1},
    "sync_members": {"type": "list", "elements": "str", "default": []},
}


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("ssl_mode", "verify-full", ["ssl_root_cert"]), ("ssl_mode", "verify-ca", ["ssl_root_cert"])],
        supports_check_mode=True,
    )
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2"))
    params = module.params

    connect = psycopg2_connector(
        psycopg2,
        dbname=params["login_db"],
        user=params["login_user"],
        password=params["login_password"],
        application_name="rehab-failover-check",
        sslmode=params["ssl_mode"],
        sslrootcert=params["ssl_root_cert"],
    )

    def observe():
        nodes = probe_all(params["nodes"], connect, params["connect_timeout"])
        decision = decide(
            nodes,
            mode=params["mode"],
            max_lag_bytes=params["max_lag_bytes"],
            sync_standbys=params["sync_standbys"],
            sync_num=params["sync_num"],
            sync_members=params["sync_members"],
            heard_bound_seconds=params["heard_bound_seconds"] or None,
            stale_bound_seconds=params["stale_bound_seconds"],
            system_identifier=params["system_identifier"],
            target=params["target"],
        )
        return nodes, decision

    # Read-only in both modes: check mode probes and decides exactly the same way.
    started = time.monotonic()
    try:
        nodes, decision = observe()
        while decision["waiting_may_help"] and time.monotonic() - started < params["wait_seconds"]:
            time.sleep(0.5)
            nodes, decision = observe()
    except FailoverInputError as err:
        module.fail_json(msg=str(err))
    module.exit_json(
        changed=False,
        nodes=[report(n) for n in nodes],
        waited_seconds=round(time.monotonic() - started, 1),
        **decision,
    )


if __name__ == "__main__":
    main()
