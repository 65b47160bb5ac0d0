"""The coordinator's plan: from what it holds to what the map wants, in order, nothing when equal.
(tests/integration/test_shard_routing.py runs the module against real PostgreSQL servers.)"""

import pytest

from ansible_collections.rehab.scale.plugins.module_utils import shard_coordinator as sc

SHARDS = [
    {"name": "shard1", "min_id": 1, "max_id": 100000, "host": "10.0.0.1"},
    {"name": "shard2", "min_id": 100001, "max_id": 200000, "host": "10.0.0.2", "port": 5433},
    {"name": "shard3", "min_id": 200001, "capacity": 100000, "host": "10.0.0.3", "dbname": "shard3"},
]
EMPTY = {"extension": False, "servers": {}, "parent": None, "partitions": {}, "map": []}


def want(shards=SHARDS, **extra):
    args = {"table": "beneficiaries", "user": "rehab", "remote_user": "reader", "remote_password": "s3cr'et"}
    return sc.desired(shards, **{**args, **extra})


def as_built(wanted):
    """The catalog as read() returns it once the plan ran."""
    servers = {name: {"options": s["options"], "mapping": s["mapping"]} for name, s in wanted["servers"].items()}
    parent = {"partitioned": True, "granted": True, "columns": wanted["columns"]}
    built = {"extension": True, "servers": servers, "parent": parent}
    return {**built, "partitions": wanted["partitions"], "map": wanted["map"]}


def test_an_empty_database_gets_everything_in_order_and_no_secret_in_a_description():
    steps = sc.plan(EMPTY, want())
    described = [d for d, _ in steps]
    assert described[0] == "create extension postgres_fdw"
    assert "create server rehab_shard_shard2 (10.0.0.2:5433)" in described
    assert described.index("create partitioned table beneficiaries") < described.index(
        "create partition beneficiaries_shard1 FOR VALUES FROM (1) TO (100001) on rehab_shard_shard1"
    )
    open_ended = "create partition beneficiaries_shard3 FOR VALUES FROM (200001) TO (MAXVALUE) on rehab_shard_shard3"
    assert open_ended in described
    assert described[-1] == "write the shard map (shard1, shard2, shard3)"
    assert not any("s3cr" in d for d in described)
    mapping = next(sql for d, sql in steps if d.startswith("create user mapping for rehab on rehab_shard_shard1"))
    assert "password 's3cr''et'" in mapping  # quoted, not broken by the quote
    assert "async_capable 'true'" in next(sql for d, sql in steps if d.startswith("create server rehab_shard_shard1"))


def test_a_coordinator_as_wanted_needs_no_step():
    wanted = want()
    assert sc.plan(as_built(wanted), wanted) == []


def test_changes_are_altered_or_rebuilt_and_a_removed_shard_dropped():
    built = as_built(want())
    moved = [*SHARDS[:2], {**SHARDS[2], "host": "10.0.0.9"}]
    assert [d for d, _ in sc.plan(built, want(moved))] == ["alter server rehab_shard_shard3 options"]
    assert [d for d, _ in sc.plan(built, want(remote_password="new"))] == [
        f"alter user mapping for rehab on rehab_shard_{n}" for n in ("shard1", "shard2", "shard3")
    ]
    two = [SHARDS[0], {**SHARDS[1], "max_id": None, "capacity": 5}]
    described = [d for d, _ in sc.plan(built, want(two))]
    assert described == [
        "drop server rehab_shard_shard3 (its shard left the map)",
        "drop partition beneficiaries_shard3 (its shard left the map)",
        "drop partition beneficiaries_shard2 (bounds or server changed)",
        "create partition beneficiaries_shard2 FOR VALUES FROM (100001) TO (MAXVALUE) on rehab_shard_shard2",
        "write the shard map (shard1, shard2)",
    ]
    wider = want(columns=[*sc.DEFAULT_COLUMNS, {"name": "programme", "type": "text"}])
    described = [d for d, _ in sc.plan(built, wider)]
    assert described[:3] == [
        "drop beneficiaries (columns changed; it holds no data)",
        "create partitioned table beneficiaries",
        "grant select on beneficiaries to rehab",
    ]
    assert sum(d.startswith("create partition ") for d in described) == 3


def test_a_table_with_data_is_never_taken_over():
    current = {**as_built(want()), "parent": {"partitioned": False, "granted": True, "columns": []}}
    with pytest.raises(sc.CoordinatorError, match="exists on the coordinator and is not partitioned"):
        sc.plan(current, want())


@pytest.mark.parametrize(
    ("shards", "extra", "message"),
    [
        ([{**SHARDS[0], "host": None}, *SHARDS[1:]], {}, "shard shard1: host is missing"),
        ([{**SHARDS[0], "max_id": 99999}, *SHARDS[1:]], {}, "gap between shards[0] (shard1) and shards[1] (shard2)"),
        (SHARDS, {"table": "Beneficiaries; DROP"}, "table 'Beneficiaries; DROP' is not a plain lower-case SQL name"),
        (SHARDS, {"columns": [{"name": "name", "type": "text"}]}, "columns must include id"),
        ([{**SHARDS[0], "name": "shard-1"}, *SHARDS[1:]], {}, "shard name 'shard-1' is not a plain"),
    ],
)
def test_bad_input_is_refused_naming_it(shards, extra, message):
    with pytest.raises(sc.CoordinatorError) as err:
        want(shards, **extra)
    assert message in str(err.value)


def test_partition_bounds_read_back_compare_equal():
    assert sc.normalise_bound("FOR VALUES FROM ('1') TO ('100001')") == "FOR VALUES FROM (1) TO (100001)"
    assert sc.normalise_bound("FOR VALUES FROM (200001) TO (MAXVALUE)") == "FOR VALUES FROM (200001) TO (MAXVALUE)"
