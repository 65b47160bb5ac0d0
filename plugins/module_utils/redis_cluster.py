# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""Redis Cluster layout and state assessment, free of any I/O (unit-tested on its own).

The layout puts one master and one replica on every host, and the replica on host i follows the
master on host i+1, so no replica ever sits on the same host as its master.
"""

from __future__ import annotations

SLOTS = 16384


class LayoutError(ValueError):
    """The requested layout cannot be built; the message names the bad value."""


def slot_ranges(masters: int) -> list[tuple[int, int]]:
    """Split the 16,384 hash slots into `masters` contiguous, near-equal, inclusive ranges."""
    if masters < 1:
        raise LayoutError(f"masters must be at least 1, got {masters}")
    ranges = []
    start = 0
    for index in range(masters):
        size = SLOTS // masters + (1 if index < SLOTS % masters else 0)
        ranges.append((start, start + size - 1))
        start += size
    return ranges


def plan_layout(hosts: list[str], master_port: int, replica_port: int) -> list[dict]:
    """One master (master_port) and one replica (replica_port) per host; anti-affine replicas."""
    if len(hosts) < 3:
        raise LayoutError(f"a Redis Cluster needs at least 3 hosts, got {len(hosts)}: {hosts}")
    duplicates = sorted({h for h in hosts if hosts.count(h) > 1})
    if duplicates:
        raise LayoutError(f"each host may appear once, repeated: {duplicates}")
    if master_port == replica_port:
        raise LayoutError(f"master and replica ports must differ, both are {master_port}")
    for port in (master_port, replica_port):
        if not 1 <= port <= 55535:  # the cluster bus uses port + 10000
            raise LayoutError(f"port {port} is outside 1-55535 (the bus port is port + 10000)")
    ranges = slot_ranges(len(hosts))
    nodes = []
    for index, host in enumerate(hosts):
        nodes.append({"addr": f"{host}:{master_port}", "host": host, "role": "master", "slots": list(ranges[index])})
    for index, host in enumerate(hosts):
        followed = hosts[(index + 1) % len(hosts)]
        nodes.append(
            {"addr": f"{host}:{replica_port}", "host": host, "role": "replica", "master": f"{followed}:{master_port}"}
        )
    return nodes


def parse_info(text) -> dict:
    """CLUSTER INFO as a dict of strings (accepts the raw reply or an already parsed dict)."""
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    if isinstance(text, bytes):
        text = text.decode()
    info = {}
    for line in str(text).splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            info[key.strip()] = value.strip()
    return info


def parse_nodes(text) -> list[dict]:
    """CLUSTER NODES as a list of {id, addr, flags, master_id, slots}."""
    if isinstance(text, bytes):
        text = text.decode()
    nodes = []
    for line in str(text).splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        addr = fields[1].split("@", 1)[0].split(",", 1)[0]
        nodes.append(
            {
                "id": fields[0],
                "addr": addr,
                "flags": fields[2].split(","),
                "master_id": None if fields[3] == "-" else fields[3],
                "slots": fields[8:],
            }
        )
    return nodes


def assess(layout: list[dict], observed: dict) -> dict:
    """Compare what every node reports with the layout.

    observed maps addr -> {"error": str} or {"info": dict, "nodes": list} (parsed).
    Returns {"status": formed|empty|settling|partial|unreachable, "problems": [...], "colocated": [...]}.
    "settling": every node knows every other and sees every slot assigned, but some node does not
    report cluster_state:ok yet (failure reports about a node that restarted during formation take
    a few node timeouts to clear); waiting, without changing anything, is the safe response.
    """
    addrs = [n["addr"] for n in layout]
    unreachable = sorted(addr for addr in addrs if "error" in observed.get(addr, {"error": "not probed"}))
    if unreachable:
        return {
            "status": "unreachable",
            "problems": [f"{addr}: {observed.get(addr, {}).get('error', 'not probed')}" for addr in unreachable],
            "colocated": [],
        }
    total = len(layout)
    infos = {n["addr"]: observed[n["addr"]]["info"] for n in layout}
    known = {addr: int(info.get("cluster_known_nodes", "0")) for addr, info in infos.items()}
    assigned = {addr: int(info.get("cluster_slots_assigned", "0")) for addr, info in infos.items()}
    if all(k == 1 for k in known.values()) and all(a == 0 for a in assigned.values()):
        return {"status": "empty", "problems": [], "colocated": []}

    problems, unsettled = [], []
    for addr in sorted(infos):
        info = infos[addr]
        if known[addr] != total:
            problems.append(f"{addr} knows {known[addr]} nodes, expected {total}")
        if assigned[addr] != SLOTS:
            problems.append(f"{addr} sees {assigned[addr]} of {SLOTS} slots assigned")
        if info.get("cluster_state") != "ok":
            unsettled.append(f"{addr} reports cluster_state:{info.get('cluster_state', 'unknown')}")
    colocated = colocated_pairs(observed[layout[0]["addr"]]["nodes"])
    if problems:
        status = "partial"
    elif unsettled:
        status = "settling"
    else:
        status = "formed"
    return {"status": status, "problems": problems + unsettled, "colocated": colocated}


def colocated_pairs(nodes: list[dict]) -> list[str]:
    """Replicas that sit on the same host as their master, as 'replica -> master' strings."""
    by_id = {n["id"]: n for n in nodes}
    pairs = []
    for node in nodes:
        master = by_id.get(node["master_id"] or "")
        same_host = master is not None and node["addr"].rsplit(":", 1)[0] == master["addr"].rsplit(":", 1)[0]
        if "slave" in node["flags"] and same_host:
            pairs.append(f"{node['addr']} -> {master['addr']}")
    return sorted(pairs)


def tls_settings(params):
    """redis-py's TLS arguments: verify the chain and the address the node is reached at."""
    if not params.get("tls"):
        return {}
    return {"ssl": True, "ssl_ca_certs": params["ca_cert"], "ssl_cert_reqs": "required", "ssl_check_hostname": True}
