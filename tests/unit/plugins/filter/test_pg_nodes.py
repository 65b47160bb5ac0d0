"""pg_nodes: addresses from facts, fallbacks for hosts without facts, clear errors."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.filter.pg_nodes import (
    lsn_int,
    pg_conninfo,
    pg_fence_outcome,
    pg_nodes,
    pg_rejoin_plan,
)

HOSTVARS = {
    "pg1": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.1"}}, "postgresql_port": 5433},
    "pg2": {"ansible_host": "192.0.2.2", "postgresql_failover_priority": 200},
    "pg3": {},
    "pg4": {"rehab_address": "10.9.9.9", "ansible_facts": {"default_ipv4": {"address": "10.0.0.4"}}},
}


def test_addresses_and_fallbacks():
    assert pg_nodes(["pg1", "pg2", "pg3", "pg4"], HOSTVARS) == [
        {"name": "pg1", "host": "10.0.0.1", "port": 5433, "priority": 100, "skip": False},
        {"name": "pg2", "host": "192.0.2.2", "port": 5432, "priority": 200, "skip": False},
        {"name": "pg3", "host": "pg3", "port": 5432, "priority": 100, "skip": False},
        {"name": "pg4", "host": "10.9.9.9", "port": 5432, "priority": 100, "skip": False},
    ]
    assert [n["skip"] for n in pg_nodes(["pg1", "pg2"], HOSTVARS, skip=["pg2"])] == [False, True]


@pytest.mark.parametrize(("names", "message"), [(["pg9"], "'pg9' is not in the inventory"), ("pg1", "expected a list")])
def test_errors(names, message):
    with pytest.raises(AnsibleFilterError, match=message):
        pg_nodes(names, HOSTVARS)


def test_lsn_int():
    assert lsn_int("1/0") == 2**32
    with pytest.raises(AnsibleFilterError, match=r"rehab\.scale\.lsn_int: 'x' is not a PostgreSQL LSN"):
        lsn_int("x")


@pytest.mark.parametrize(
    ("facts", "confirmed", "expected"),
    [
        # the dead host could not be fenced and nobody confirmed it: the failover stops
        ({}, "", {"fenced": [], "confirmed_dead": [], "unfenced": ["pg1"], "confirmations_unused": []}),
        # on-call confirmed it dead (as given with -e, a string)
        ({}, "pg1", {"fenced": [], "confirmed_dead": ["pg1"], "unfenced": [], "confirmations_unused": []}),
        # fenced: a confirmation is not needed, a stray one is reported
        (
            {"pg1": True},
            ["pg1", "pg7"],
            {"fenced": ["pg1"], "confirmed_dead": [], "unfenced": [], "confirmations_unused": ["pg7"]},
        ),
        # the fence step ran but could not stop it (fact false): still unfenced
        ({"pg1": False}, None, {"fenced": [], "confirmed_dead": [], "unfenced": ["pg1"], "confirmations_unused": []}),
    ],
)
def test_pg_fence_outcome(facts, confirmed, expected):
    hostvars = {
        name: ({"postgresql_fenced": value} if name in facts else {}) for name, value in [("pg1", facts.get("pg1"))]
    }
    assert pg_fence_outcome(["pg1"], hostvars, confirmed) == expected


def test_pg_fence_outcome_two_nodes_one_confirmed():
    hostvars = {"pg1": {}, "pg3": {"postgresql_fenced": True}, "pg4": {}}
    outcome = pg_fence_outcome(["pg1", "pg3", "pg4"], hostvars, "pg1, ")
    assert outcome["unfenced"] == ["pg4"] and outcome["fenced"] == ["pg3"] and outcome["confirmed_dead"] == ["pg1"]


def _probe(*nodes):
    return {"nodes": [{"name": n, "role": r, "timeline": t} for n, r, t in nodes]}


@pytest.mark.parametrize(
    ("probe", "node", "local", "source", "problem"),
    [
        # a returned old primary kept down by its guard: its timeline comes from pg_controldata
        (_probe(("pg1", "unknown", None), ("pg2", "primary", 2), ("pg3", "replica", 2)), "pg1", 1, "pg2", None),
        # a second primary on an older timeline (no guard): rewound
        (_probe(("pg1", "primary", 1), ("pg2", "primary", 2)), "pg1", None, "pg2", None),
        # the only primary is never rewound
        (_probe(("pg1", "replica", 2), ("pg2", "primary", 2)), "pg2", None, None, "pg2 is the only primary"),
        # a node on a newer timeline than the primary may hold the newest writes
        (
            _probe(("pg1", "unknown", None), ("pg2", "primary", 2)),
            "pg1",
            "3",
            "pg2",
            "pg1 is on timeline 3, newer than pg2",
        ),
        # no primary at all
        (_probe(("pg1", "unknown", None), ("pg2", "replica", 2)), "pg1", 1, None, "exactly one is needed"),
        (_probe(("pg1", "replica", 1)), "pg9", None, None, "pg9 is not a node of this cluster"),
    ],
)
def test_pg_rejoin_plan(probe, node, local, source, problem):
    plan = pg_rejoin_plan(probe, node, local)
    assert plan["source"] == source
    if problem is None:
        assert plan["problems"] == []
    else:
        assert any(problem in p for p in plan["problems"])


def test_pg_rejoin_plan_needs_a_probe_result():
    with pytest.raises(AnsibleFilterError, match=r"expected the result of rehab\.scale\.pg_failover_check"):
        pg_rejoin_plan("pg1", "pg1")


def test_pg_conninfo_pairs_one_port_with_each_host_and_collapses_the_settings():
    assert pg_conninfo(["10.0.0.1", "10.0.0.2"], 5432, "dbname=rehab\n  user=rehab ", "read-write") == (
        "host=10.0.0.1,10.0.0.2 port=5432,5432 dbname=rehab user=rehab target_session_attrs=read-write"
    )
    assert pg_conninfo(["pg1"], "5433", "sslmode=disable ") == "host=pg1 port=5433 sslmode=disable"
    assert pg_conninfo(["pg1"], 5432) == "host=pg1 port=5432"


@pytest.mark.parametrize("hosts", ["pg1,pg2", None, {"pg1": 1}])
def test_pg_conninfo_refuses_hosts_that_are_not_a_list(hosts):
    with pytest.raises(AnsibleFilterError, match="expected a list of hosts"):
        pg_conninfo(hosts, 5432)
