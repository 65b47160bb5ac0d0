"""The shard_assignment module: argument handling, check mode, failures without partial output."""

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.rehab.scale.plugins.modules import shard_assignment


def run_module(args, capsys):
    """Run main() as Ansible would; return (exit code, result dict)."""
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        shard_assignment.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def test_assign_default_map(capsys):
    code, result = run_module({"ids": [123456]}, capsys)
    assert code == 0
    assert result["changed"] is False
    assert result["shard"]["name"] == "shard2"
    assert result["counts"] == {"shard1": 0, "shard2": 1, "shard3": 0}


def test_ad_hoc_string_ids(capsys):
    code, result = run_module({"ids": "[100000, 100001]"}, capsys)
    assert code == 0
    assert [a["shard"] for a in result["assignments"]] == ["shard1", "shard2"]


def test_check_mode_same_result(capsys):
    _, normal = run_module({"ids": [5, 250000]}, capsys)
    code, checked = run_module({"ids": [5, 250000], "_ansible_check_mode": True}, capsys)
    assert code == 0
    assert checked["counts"] == normal["counts"]
    assert checked["changed"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"ids": [1, 0]}, "ids[1]: 0 is not a valid beneficiary ID"),
        ({"action": "validate", "shards": []}, "shard map is empty"),
        ({"action": "balance"}, "action is balance but all of the following are missing: counts"),
        ({"action": "plan_split", "shard": "shard3"}, "missing: boundary, histogram"),
        ({"action": "plan_split", "shard": "shard3", "boundary": 300001, "histogram": []}, "mutually exclusive"),
        ({"action": "assign"}, "missing: ids"),
        ({"action": "nope"}, "value of action must be one of"),
    ],
)
def test_failures_carry_one_message_and_no_result(args, message, capsys):
    code, result = run_module(args, capsys)
    assert code == 1
    assert result["failed"] is True
    assert message in result["msg"]
    assert "counts" not in result and "shard_map" not in result


def test_validate_custom_map_with_passthrough(capsys):
    shards = [
        {"name": "eu1", "min_id": 1, "max_id": 50, "pg_group": "pg_eu1"},
        {"name": "eu2", "min_id": 51, "pg_group": "pg_eu2"},
    ]
    code, result = run_module({"action": "validate", "shards": shards}, capsys)
    assert code == 0
    assert result["valid"] is True
    assert result["shard_map"][1]["pg_group"] == "pg_eu2"


def test_balance_and_split(capsys):
    _, balance = run_module(
        {"action": "balance", "counts": {"shard1": 10, "shard2": 10, "shard3": 40}, "capacity": 30}, capsys
    )
    assert balance["over_capacity"] == ["shard3"]
    assert balance["balanced"] is False
    _, split = run_module({"action": "plan_split", "shard": "shard3", "boundary": "300001"}, capsys)
    assert split["changed"] is False
    assert split["shard_map"][-1] == {"name": "shard4", "min_id": 300001, "max_id": None}


def test_place_names_the_emptiest_shard_that_can_take_one(capsys):
    shards = [{"name": "a", "min_id": 1, "max_id": 10}, {"name": "b", "min_id": 11, "capacity": 100}]
    code, result = run_module(
        {"action": "place", "shards": shards, "counts": {"a": 1, "b": 50}, "unavailable": ["a"]}, capsys
    )
    assert (code, result["shard"], result["fills"]) == (0, "b", {"a": 0.1, "b": 0.5})
    code, result = run_module({"action": "place"}, capsys)
    assert code == 1 and "missing: counts" in result["msg"]
