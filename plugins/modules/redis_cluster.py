#!/usr/bin/python
# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
module: redis_cluster
short_description: Create a Redis Cluster once, with no replica on its master's host, and report its health
version_added: 0.2.0
description:
  - Lays out one master (O(master_port)) and one replica (O(replica_port)) on each of O(hosts); the
    replica on host I(i) follows the master on host I(i+1), so losing a host never loses both copies
    of a slot range.
  - Probes every instance with C(CLUSTER INFO) and C(CLUSTER NODES). When every instance is empty
    (knows only itself, no slots) it creates the cluster; when the cluster is formed it changes
    nothing; anything in between is refused with one line per problem, because guessing could lose
    data.
  - Creation assigns the slot ranges, sets distinct config epochs, joins every node with
    C(CLUSTER MEET), attaches the replicas with C(CLUSTER REPLICATE), and waits for
    C(cluster_state:ok) on every node.
  - Adding hosts to a formed cluster is a manual, documented step (see the role README); the module
    does not reshard.
requirements:
  - redis (python3-redis) on the host the module runs on.
options:
  hosts:
    description: Addresses of the Redis hosts, in a stable order (at least 3).
    type: list
    elements: str
    required: true
  master_port:
    description: Port of the master instance on each host.
    type: int
    default: 7000
  replica_port:
    description: Port of the replica instance on each host.
    type: int
    default: 7001
  login_user:
    description: ACL user with the cluster administration commands.
    type: str
    default: default
  login_password:
    description: Its password.
    type: str
    required: true
  tls:
    description:
      - Connect over TLS and verify each node's certificate against I(ca_cert) and the address it is
        reached at (the servers run with C(tls-port) and C(port 0)).
    type: bool
    default: false
  ca_cert:
    description: CA certificate the nodes' certificates chain to; required with I(tls).
    type: path
  timeout:
    description: Seconds to wait for the cluster to converge after creation.
    type: int
    default: 60
  state:
    description: C(present) creates the cluster when every node is empty; C(checked) only reports.
    type: str
    choices: [present, checked]
    default: present
attributes:
  check_mode:
    support: full
    description: Reports whether the cluster would be created; changes nothing.
"""

EXAMPLES = r"""
- name: Create the cluster once
  rehab.scale.redis_cluster:
    hosts: "{{ groups['redis'] | map('extract', hostvars, ['ansible_facts', 'default_ipv4', 'address']) | list }}"
    login_password: "{{ vault_redis_password }}"
  run_once: true
  no_log: true
"""

RETURN = r"""
status:
  description:
    - C(formed) after a successful run; C(empty) in check mode before creation.
    - On failure C(unreachable) (a node does not answer; the role retries), C(settling) (formed, but a
      node still reports C(cluster_state:fail) after O(timeout) seconds), C(partial) (nodes disagree
      on membership or slots; nothing is changed) or C(failed) (creation itself failed).
  returned: always
  type: str
  sample: formed
cluster_state:
  description: C(cluster_state) reported by the first master.
  returned: always
  type: str
  sample: ok
slots_assigned:
  description: Hash slots assigned, as the first master sees them (16384 when complete).
  returned: always
  type: int
  sample: 16384
known_nodes:
  description: Nodes the first master knows.
  returned: always
  type: int
  sample: 6
layout:
  description: The planned nodes (addr, host, role, slots or master).
  returned: always
  type: list
  elements: dict
colocated:
  description: Replicas on the same host as their master (empty in a healthy layout).
  returned: always
  type: list
  elements: str
"""

import contextlib
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.rehab.scale.plugins.module_utils.redis_cluster import (
    LayoutError,
    assess,
    parse_info,
    parse_nodes,
    plan_layout,
    tls_settings,
)

try:
    import redis

    HAS_REDIS = True
except ImportError:  # pragma: no cover - reported through fail_json
    HAS_REDIS = False


def connect(addr, params):
    host, port = addr.rsplit(":", 1)
    return redis.Redis(
        host=host,
        port=int(port),
        username=params["login_user"],
        password=params["login_password"],
        **tls_settings(params),
        socket_timeout=5,
        socket_connect_timeout=3,
        decode_responses=True,
    )


def probe(layout, params):
    observed = {}
    for node in layout:
        try:
            client = connect(node["addr"], params)
            observed[node["addr"]] = {
                "info": parse_info(client.execute_command("CLUSTER", "INFO")),
                "nodes": parse_nodes(client.execute_command("CLUSTER", "NODES")),
                "id": client.execute_command("CLUSTER", "MYID"),
            }
        except redis.RedisError as exc:
            observed[node["addr"]] = {"error": str(exc)}
    return observed


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def create(layout, observed, params):
    masters = [n for n in layout if n["role"] == "master"]
    first = connect(masters[0]["addr"], params)
    for epoch, node in enumerate(masters, start=1):
        client = connect(node["addr"], params)
        client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", epoch)
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", node["slots"][0], node["slots"][1])
    for node in layout[1:]:
        host, port = node["addr"].rsplit(":", 1)
        first.execute_command("CLUSTER", "MEET", host, int(port))

    def known_nodes(addr):
        return int(parse_info(connect(addr, params).execute_command("CLUSTER", "INFO"))["cluster_known_nodes"])

    def everyone_known():
        return all(known_nodes(n["addr"]) == len(layout) for n in layout)

    wait_for(everyone_known, params["timeout"], f"all {len(layout)} nodes to know each other")
    ids = {addr: data["id"] for addr, data in observed.items()}
    for node in (n for n in layout if n["role"] == "replica"):
        client = connect(node["addr"], params)
        master_id = ids[node["master"]]
        wait_for(
            lambda c=client, m=master_id: any(n["id"] == m for n in parse_nodes(c.execute_command("CLUSTER", "NODES"))),
            params["timeout"],
            f"{node['addr']} to learn of master {node['master']}",
        )
        client.execute_command("CLUSTER", "REPLICATE", master_id)

    def all_ok():
        again = probe(layout, params)
        return assess(layout, again)["status"] == "formed" and all(
            any("slave" in n["flags"] for n in again[r["addr"]]["nodes"] if n["addr"] == r["addr"])
            for r in layout
            if r["role"] == "replica"
        )

    wait_for(all_ok, params["timeout"], "cluster_state:ok on every node with every replica attached")


def summary(layout, observed, verdict):
    info = observed[layout[0]["addr"]].get("info", {})
    return {
        "status": verdict["status"],
        "cluster_state": info.get("cluster_state", "unknown"),
        "slots_assigned": int(info.get("cluster_slots_assigned", "0")),
        "known_nodes": int(info.get("cluster_known_nodes", "0")),
        "layout": layout,
        "colocated": verdict["colocated"],
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "hosts": {"type": "list", "elements": "str", "required": True},
            "master_port": {"type": "int", "default": 7000},
            "replica_port": {"type": "int", "default": 7001},
            "login_user": {"type": "str", "default": "default"},
            "login_password": {"type": "str", "required": True, "no_log": True},
            "tls": {"type": "bool", "default": False},
            "ca_cert": {"type": "path"},
            "timeout": {"type": "int", "default": 60},
            "state": {"type": "str", "choices": ["present", "checked"], "default": "present"},
        },
        required_if=[("tls", True, ["ca_cert"])],
        supports_check_mode=True,
    )
    if not HAS_REDIS:
        module.fail_json(msg=missing_required_lib("redis"))
    params = module.params
    try:
        layout = plan_layout(params["hosts"], params["master_port"], params["replica_port"])
    except LayoutError as exc:
        module.fail_json(msg=f"Redis Cluster layout refused: {exc}")

    observed = probe(layout, params)
    verdict = assess(layout, observed)
    if verdict["status"] == "settling":
        # Formed, but a node still reports a failure it saw (a restart during formation); read-only wait.
        with contextlib.suppress(TimeoutError):  # still settling after the timeout: reported below
            wait_for(lambda: assess(layout, probe(layout, params))["status"] == "formed", params["timeout"], "ok")
        observed = probe(layout, params)
        verdict = assess(layout, observed)
    if verdict["status"] == "formed":
        module.exit_json(changed=False, **summary(layout, observed, verdict))
    if verdict["status"] == "empty" and params["state"] == "present":
        if module.check_mode:
            module.exit_json(changed=True, **summary(layout, observed, verdict))
        try:
            create(layout, observed, params)
        except (redis.RedisError, TimeoutError) as exc:
            # status "failed", not "unreachable": the task retries only unreachable clusters, and a
            # retry would report the half-made cluster as "partial" and hide this first error.
            module.fail_json(msg=f"Redis Cluster creation failed: {exc}", status="failed", layout=layout)
        observed = probe(layout, params)
        verdict = assess(layout, observed)
        module.exit_json(changed=True, **summary(layout, observed, verdict))
    module.fail_json(
        msg=f"Redis Cluster is {verdict['status']}; refusing to guess. " + "; ".join(verdict["problems"]),
        **summary(layout, observed, verdict),
    )


if __name__ == "__main__":
    main()
