"""The shard_for filter, directly and through Ansible's templating."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.filter.shard_for import (
    FilterModule,
    shard_endpoints,
    shard_for,
    shard_group,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, "shard1"),
        (100_000, "shard1"),
        (100_001, "shard2"),
        (150_000, "shard2"),
        (200_000, "shard2"),
        (200_001, "shard3"),
        ("42", "shard1"),
    ],
)
def test_default_map(value, expected):
    assert shard_for(value) == expected


def test_custom_map():
    shards = [{"name": "a", "min_id": 1, "max_id": 9}, {"name": "b", "min_id": 10}]
    assert shard_for(10, shards) == "b"


@pytest.mark.parametrize(
    ("value", "shards", "message"),
    [
        (0, None, "0 is not a valid beneficiary ID"),
        ("abc", None, "'abc' is not a number"),
        (5, [{"name": "a", "min_id": 2}], "the map must start at ID 1, not 2"),
    ],
)
def test_errors_name_the_problem(value, shards, message):
    with pytest.raises(AnsibleFilterError, match="rehab.scale.shard_for: .*" + message):
        shard_for(value, shards)


def test_registered_name():
    assert FilterModule().filters()["shard_for"] is shard_for


def test_shard_group_rule():
    assert shard_group("shard2", "postgresql") == "shard2_postgresql"
    assert shard_group({"name": "eu_1", "min_id": 1}, "redis") == "eu_1_redis"
    assert shard_group(["shard1", "shard2"], "redis") == ["shard1_redis", "shard2_redis"]
    assert FilterModule().filters()["shard_group"] is shard_group


@pytest.mark.parametrize(
    ("value", "kind", "message"),
    [
        ("shard-2", "postgresql", "shard name 'shard-2'"),
        ("2shard", "redis", "shard name '2shard'"),
        (None, "redis", "shard name None"),
        ("shard2", "backup", "group kind 'backup'"),
    ],
)
def test_shard_group_refuses_names_that_cannot_make_a_group(value, kind, message):
    with pytest.raises(AnsibleFilterError, match=message):
        shard_group(value, kind)


GROUPS = {
    "shard1_postgresql": ["pg1", "pg2"],
    "shard1_redis": ["app1"],
    "shard2_postgresql": ["pg3"],
    "shard2_redis": ["r1", "r2", "r3"],
}
HOSTVARS = {
    "pg1": {"ansible_facts": {"default_ipv4": {"address": "10.0.0.1"}}},
    "pg2": {"rehab_address": "10.0.0.2"},
    "pg3": {"ansible_host": "10.0.0.3"},
    "app1": {"ansible_facts": {"default_ipv4": {"address": "10.0.1.1"}}},
    "r1": {}, "r2": {}, "r3": {},
}  # fmt: skip


def test_shard_endpoints_follow_the_group_rule_and_the_address_rule():
    shards = [{"name": "shard1", "min_id": 1, "max_id": 10, "extra": "kept"}, {"name": "shard2", "min_id": 11}]
    got = shard_endpoints(shards, GROUPS, HOSTVARS, redis_port=6379, redis_cluster_port=7000)
    assert got[0] == {
        "name": "shard1", "min_id": 1, "max_id": 10, "extra": "kept",
        "db_hosts": ["10.0.0.1", "10.0.0.2"], "db_cluster": "shard1_postgresql",
        "redis_nodes": ["10.0.1.1:6379"], "redis_cluster": False,
    }  # fmt: skip
    # Three Redis hosts form a cluster: its port.
    assert got[1]["redis_nodes"] == ["r1:7000", "r2:7000", "r3:7000"] and got[1]["redis_cluster"] is True
    assert shards[0] == {"name": "shard1", "min_id": 1, "max_id": 10, "extra": "kept"}  # input untouched


def test_shard_endpoints_of_a_shard_without_groups_are_empty_and_bad_input_is_named():
    assert shard_endpoints([{"name": "shard9", "min_id": 1}], GROUPS, HOSTVARS)[0]["db_hosts"] == []
    with pytest.raises(AnsibleFilterError, match="expected the shard map"):
        shard_endpoints("shard1", GROUPS, HOSTVARS)
    with pytest.raises(AnsibleFilterError, match="'ghost' is in a shard group but not in the inventory"):
        shard_endpoints([{"name": "shard1", "min_id": 1}], {"shard1_postgresql": ["ghost"]}, HOSTVARS)
    with pytest.raises(AnsibleFilterError, match="shard name 'bad-name'"):
        shard_endpoints([{"name": "bad-name", "min_id": 1}], GROUPS, HOSTVARS)
