"""Redis Cluster layout and assessment (pure functions behind rehab.scale.redis_cluster)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.rehab.scale.plugins.module_utils.redis_cluster import (
    SLOTS,
    LayoutError,
    assess,
    colocated_pairs,
    parse_info,
    parse_nodes,
    plan_layout,
    slot_ranges,
    tls_settings,
)

HOSTS = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


@given(st.integers(min_value=1, max_value=1000))
def test_slot_ranges_cover_every_slot_once(masters):
    ranges = slot_ranges(masters)
    covered = [slot for start, end in ranges for slot in range(start, end + 1)]
    assert covered == list(range(SLOTS))
    sizes = [end - start + 1 for start, end in ranges]
    assert max(sizes) - min(sizes) <= 1


@given(st.lists(st.integers(min_value=1, max_value=254), min_size=3, max_size=30, unique=True))
def test_no_replica_on_its_masters_host(last_octets):
    hosts = [f"10.1.0.{o}" for o in last_octets]
    layout = plan_layout(hosts, 7000, 7001)
    masters = {n["addr"]: n for n in layout if n["role"] == "master"}
    replicas = [n for n in layout if n["role"] == "replica"]
    assert len(masters) == len(replicas) == len(hosts)
    for replica in replicas:
        assert masters[replica["master"]]["host"] != replica["host"]
    # every master has exactly one replica
    assert sorted(r["master"] for r in replicas) == sorted(masters)


def test_three_host_layout_is_the_documented_one():
    layout = plan_layout(HOSTS, 7000, 7001)
    assert [(n["addr"], n.get("master"), n.get("slots")) for n in layout] == [
        ("10.0.0.1:7000", None, [0, 5461]),
        ("10.0.0.2:7000", None, [5462, 10922]),
        ("10.0.0.3:7000", None, [10923, 16383]),
        ("10.0.0.1:7001", "10.0.0.2:7000", None),
        ("10.0.0.2:7001", "10.0.0.3:7000", None),
        ("10.0.0.3:7001", "10.0.0.1:7000", None),
    ]


@pytest.mark.parametrize(
    ("hosts", "ports", "message"),
    [
        (HOSTS[:2], (7000, 7001), "at least 3 hosts"),
        ([*HOSTS, HOSTS[0]], (7000, 7001), "repeated: ['10.0.0.1']"),
        (HOSTS, (7000, 7000), "both are 7000"),
        (HOSTS, (7000, 60000), "port 60000"),
    ],
)
def test_bad_layouts_name_the_bad_value(hosts, ports, message):
    with pytest.raises(LayoutError, match=message.replace("[", r"\[").replace("]", r"\]")):
        plan_layout(hosts, *ports)


INFO_OK = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_known_nodes:6\r\n"
INFO_EMPTY = "cluster_state:fail\r\ncluster_slots_assigned:0\r\ncluster_known_nodes:1\r\n"
NODES = (
    "a1 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5461\n"
    "b1 10.0.0.2:7000@17000 master - 0 0 2 connected 5462-10922\n"
    "c1 10.0.0.3:7000@17000 master - 0 0 3 connected 10923-16383\n"
    "a2 10.0.0.1:7001@17001 slave b1 0 0 2 connected\n"
    "b2 10.0.0.2:7001@17001 slave c1 0 0 3 connected\n"
    "c2 10.0.0.3:7001@17001 slave a1 0 0 1 connected\n"
)


def observed(info, nodes=NODES):
    return {n["addr"]: {"info": parse_info(info), "nodes": parse_nodes(nodes)} for n in plan_layout(HOSTS, 7000, 7001)}


def test_parse_info_and_nodes():
    assert parse_info(INFO_OK)["cluster_known_nodes"] == "6"
    assert parse_info({"cluster_state": "ok"}) == {"cluster_state": "ok"}
    nodes = parse_nodes(NODES)
    assert nodes[3] == {"id": "a2", "addr": "10.0.0.1:7001", "flags": ["slave"], "master_id": "b1", "slots": []}
    assert nodes[0]["slots"] == ["0-5461"]


def test_formed_cluster_is_left_alone():
    verdict = assess(plan_layout(HOSTS, 7000, 7001), observed(INFO_OK))
    assert verdict == {"status": "formed", "problems": [], "colocated": []}


def test_empty_nodes_are_created():
    assert assess(plan_layout(HOSTS, 7000, 7001), observed(INFO_EMPTY, ""))["status"] == "empty"


def test_half_formed_cluster_is_refused_with_reasons():
    state = observed(INFO_OK)
    state["10.0.0.3:7001"] = {"info": parse_info(INFO_EMPTY), "nodes": []}
    verdict = assess(plan_layout(HOSTS, 7000, 7001), state)
    assert verdict["status"] == "partial"
    assert "10.0.0.3:7001 knows 1 nodes, expected 6" in verdict["problems"]


def test_formed_cluster_still_reporting_a_failure_is_settling_not_partial():
    # Seen in CI: a node restarted during formation; two nodes reported cluster_state:fail for a
    # while although membership and slots were complete. Waiting is safe; refusing was not needed.
    state = observed(INFO_OK)
    for addr in ("10.0.0.1:7000", "10.0.0.1:7001"):
        state[addr] = {"info": parse_info(INFO_OK.replace("ok", "fail")), "nodes": parse_nodes(NODES)}
    verdict = assess(plan_layout(HOSTS, 7000, 7001), state)
    assert verdict["status"] == "settling"
    assert verdict["problems"] == [
        "10.0.0.1:7000 reports cluster_state:fail",
        "10.0.0.1:7001 reports cluster_state:fail",
    ]


def test_membership_problems_outrank_settling():
    state = observed(INFO_OK)
    state["10.0.0.1:7000"] = {"info": parse_info(INFO_OK.replace("ok", "fail")), "nodes": parse_nodes(NODES)}
    state["10.0.0.3:7001"] = {"info": parse_info(INFO_EMPTY), "nodes": []}
    assert assess(plan_layout(HOSTS, 7000, 7001), state)["status"] == "partial"


def test_unreachable_node_is_named():
    state = observed(INFO_OK)
    state["10.0.0.2:7000"] = {"error": "Connection refused"}
    verdict = assess(plan_layout(HOSTS, 7000, 7001), state)
    assert verdict["status"] == "unreachable"
    assert verdict["problems"] == ["10.0.0.2:7000: Connection refused"]


def test_colocated_pair_is_reported():
    nodes = parse_nodes(NODES.replace("a2 10.0.0.1:7001@17001 slave b1", "a2 10.0.0.1:7001@17001 slave a1"))
    assert colocated_pairs(nodes) == ["10.0.0.1:7001 -> 10.0.0.1:7000"]


def test_tls_verifies_the_chain_and_the_address():
    settings = tls_settings({"tls": True, "ca_cert": "/etc/rehab-scale/tls/ca.pem"})
    assert settings == {
        "ssl": True,
        "ssl_ca_certs": "/etc/rehab-scale/tls/ca.pem",
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
    }


def test_plaintext_adds_nothing():
    assert tls_settings({"tls": False, "ca_cert": None}) == {}
