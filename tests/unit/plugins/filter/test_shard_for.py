"""The shard_for filter, directly and through Ansible's templating."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.filter.shard_for import FilterModule, shard_for


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
