"""The restore plan: which backup, which options, and the refusals that name the value."""

import pytest

from ansible_collections.rehab.scale.plugins.module_utils.pgbackrest_plan import (
    RestorePlanError,
    lsn_value,
    restore_plan,
)

T0 = 1_800_000_000  # first full backup ends


def backup(label, kind, stop, lsn_stop, error=False):
    return {
        "label": label,
        "type": kind,
        "timestamp": {"start": stop - 60, "stop": stop},
        "lsn": {"start": "0/1000028", "stop": lsn_stop},
        "error": error,
    }


INFO = {
    "name": "postgresql",
    "status": {"code": 0},
    "backup": [
        backup("20270115-080000F", "full", T0, "0/3000100"),
        backup("20270115-080000F_20270116-080000D", "diff", T0 + 86400, "0/5000100"),
        backup("20270117-080000F", "full", T0 + 2 * 86400, "0/9000100", error=True),
    ],
}


def iso(epoch):
    import datetime  # noqa: PLC0415

    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat(sep=" ")


def test_latest_starts_from_the_newest_good_backup_and_replays_everything():
    plan = restore_plan(INFO)
    assert plan["set"] == "20270115-080000F_20270116-080000D"  # the errored full is never used
    assert plan["options"] == ["--set=20270115-080000F_20270116-080000D"]


def test_a_time_picks_the_newest_backup_that_ended_before_it():
    plan = restore_plan(INFO, "time", iso(T0 + 3600), now=T0 + 10 * 86400)
    assert plan["set"] == "20270115-080000F"
    assert "--type=time" in plan["options"]
    assert f"--target={iso(T0 + 3600)}" in plan["options"]
    assert "--target-action=promote" in plan["options"]
    assert restore_plan(INFO, "time", iso(T0 + 86400 + 1), now=T0 + 10 * 86400)["set"].endswith("D")


def test_a_time_before_the_oldest_backup_is_refused_naming_it():
    with pytest.raises(RestorePlanError, match=r"before the end of the oldest backup .*20270115-080000F"):
        restore_plan(INFO, "time", iso(T0 - 1))


def test_a_time_in_the_future_or_without_an_offset_or_malformed_is_refused():
    with pytest.raises(RestorePlanError, match="in the future"):
        restore_plan(INFO, "time", iso(T0 + 7200), now=T0 + 3600)
    with pytest.raises(RestorePlanError, match="no UTC offset"):
        restore_plan(INFO, "time", "2027-01-15 09:00:00")
    with pytest.raises(RestorePlanError, match="'yesterday' is not a time"):
        restore_plan(INFO, "time", "yesterday")


def test_lsn_targets_compare_positions_not_strings():
    assert lsn_value("0/3000060") == 0x3000060
    assert lsn_value("1/0") > lsn_value("0/FFFFFFFF")
    assert restore_plan(INFO, "lsn", "0/4000000")["set"] == "20270115-080000F"
    assert restore_plan(INFO, "lsn", "0/A000000")["set"].endswith("D")
    with pytest.raises(RestorePlanError, match="before the end of the oldest backup"):
        restore_plan(INFO, "lsn", "0/2000000")
    with pytest.raises(RestorePlanError, match="'0/xyz' is not an LSN"):
        restore_plan(INFO, "lsn", "0/xyz")


def test_a_restore_point_must_be_recorded():
    points = [{"name": "before-migration-42", "lsn": "0/6000000", "time": iso(T0 + 90000)}]
    plan = restore_plan(INFO, "name", "before-migration-42", points)
    assert plan["set"].endswith("D")
    assert "--type=name" in plan["options"]
    assert "--target=before-migration-42" in plan["options"]
    with pytest.raises(RestorePlanError, match=r"'no-such-point' is not recorded .*before-migration-42"):
        restore_plan(INFO, "name", "no-such-point", points)


def test_no_backup_or_an_unknown_target_is_refused():
    with pytest.raises(RestorePlanError, match="no complete backup of stanza 'empty'"):
        restore_plan({"name": "empty", "backup": []})
    with pytest.raises(RestorePlanError, match="'yesterday' is not one of"):
        restore_plan(INFO, "yesterday")
