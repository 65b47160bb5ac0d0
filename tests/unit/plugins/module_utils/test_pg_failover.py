"""Failover decision rules: split brain, modes, ranking, lag bound, synchronous guarantees."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.rehab.scale.plugins.module_utils.pg_failover import (
    FailoverInputError,
    NodeState,
    decide,
    int_to_lsn,
    lsn_to_int,
)

MB = 1024 * 1024


def primary(name="pg1", lsn=1000 * MB, timeline=1):
    return NodeState(name=name, reachable=True, in_recovery=False, timeline=timeline, current_lsn=lsn)


def replica(name, received, replayed=None, priority=100, timeline=1):
    return NodeState(
        name=name,
        reachable=True,
        in_recovery=True,
        timeline=timeline,
        received_lsn=received,
        replayed_lsn=received if replayed is None else replayed,
        priority=priority,
    )


def down(name):
    return NodeState(name=name, reachable=False, error="connection refused")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0/0", 0),
        ("0/3000060", 0x3000060),
        ("16/B374D848", (0x16 << 32) + 0xB374D848),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
    ],
)
def test_lsn_round_trip(text, value):
    assert lsn_to_int(text) == value
    assert lsn_to_int(int_to_lsn(value)) == value


@pytest.mark.parametrize("bad", ["", "16", "G/1", "1/2/3", "0x10/1", "123456789/0"])
def test_bad_lsn_named(bad):
    with pytest.raises(FailoverInputError, match="is not a PostgreSQL LSN"):
        lsn_to_int(bad)


def test_failover_refused_while_primary_reachable():
    result = decide([primary(), replica("pg2", 1000 * MB)], mode="failover")
    assert result["primary"] == "pg1"
    assert result["safe_to_promote"] is False
    assert any("pg1 still accepts writes" in r for r in result["reasons"])


def test_failover_picks_highest_received_lsn():
    result = decide([down("pg1"), replica("pg2", 900 * MB), replica("pg3", 950 * MB)], mode="failover")
    assert result["primary"] is None
    assert result["recommended"] == "pg3"
    assert [c["name"] for c in result["candidates"]] == ["pg3", "pg2"]
    assert result["safe_to_promote"] is True
    assert result["reasons"][-1] == "safe to promote pg3 (failover)"


@pytest.mark.parametrize(
    ("nodes", "winner"),
    [
        # received LSN decides first
        ([replica("a", 10, priority=1), replica("b", 11, priority=0)], "b"),
        # then replayed LSN
        ([replica("a", 10, replayed=5), replica("b", 10, replayed=9)], "b"),
        # then the configured priority (higher wins)
        ([replica("a", 10, priority=50), replica("b", 10, priority=200)], "b"),
        # then the name, for a stable answer
        ([replica("b", 10), replica("a", 10)], "a"),
    ],
)
def test_ranking_order(nodes, winner):
    assert decide([down("pg1"), *nodes])["recommended"] == winner


def test_split_brain_is_loud_and_unsafe():
    result = decide([primary("pg1", timeline=1), primary("pg2", timeline=2), replica("pg3", 5)], mode="switchover")
    assert result["split_brain"] is True
    assert result["primaries"] == ["pg1", "pg2"]
    assert result["primary"] is None
    assert result["safe_to_promote"] is False
    assert any(r.startswith("SPLIT BRAIN: pg1 (timeline 1), pg2 (timeline 2)") for r in result["reasons"])


def test_lag_past_bound_unsafe():
    # pg2 received everything but replays 40 MB behind (replay paused, say).
    result = decide([down("pg1"), replica("pg2", 100 * MB, replayed=60 * MB)], max_lag_bytes=16 * MB)
    assert result["recommended"] == "pg2"
    assert result["candidates"][0]["unreplayed_bytes"] == 40 * MB
    assert result["safe_to_promote"] is False
    assert any("past max_lag_bytes" in r for r in result["reasons"])


def test_lag_counts_unreceived_wal_against_best_known_position():
    # Ranked first by received LSN, so the best candidate is never behind another reachable node:
    # with the primary reachable (switchover) the reference is the primary's current LSN.
    result = decide([primary(lsn=100 * MB), replica("pg2", 70 * MB)], mode="switchover", max_lag_bytes=64 * MB)
    assert result["candidates"][0]["unreceived_bytes"] == 30 * MB
    assert result["safe_to_promote"] is False  # switchover needs lag 0


def test_switchover_safe_when_caught_up():
    result = decide([primary(lsn=100 * MB), replica("pg2", 100 * MB), replica("pg3", 99 * MB)], mode="switchover")
    assert result["recommended"] == "pg2"
    assert result["safe_to_promote"] is True


def test_switchover_needs_a_primary():
    result = decide([down("pg1"), replica("pg2", 100 * MB)], mode="switchover")
    assert result["safe_to_promote"] is False
    assert any("switchover needs a healthy primary" in r for r in result["reasons"])


def test_no_candidate():
    result = decide([down("pg1"), down("pg2")])
    assert result["recommended"] is None
    assert result["safe_to_promote"] is False
    assert "no reachable replica to promote" in result["reasons"]


def test_sync_quorum_reachable_guarantees_acknowledged_commits():
    nodes = [down("pg1"), replica("pg2", 100 * MB), replica("pg3", 98 * MB)]
    result = decide(nodes, sync_standbys=["pg2", "pg3"], sync_num=1)
    assert result["safe_to_promote"] is True
    assert result["recommended"] == "pg2"
    assert any("holds every acknowledged commit" in r for r in result["reasons"])


def test_sync_quorum_not_reachable_is_unsafe():
    # ANY 1 of (pg2, pg3): pg3 may be the only one that flushed the last acknowledged commits.
    nodes = [down("pg1"), replica("pg2", 100 * MB), down("pg3")]
    result = decide(nodes, sync_standbys=["pg2", "pg3"], sync_num=1)
    assert result["safe_to_promote"] is False
    assert any("only 1 reachable, 2 needed" in r for r in result["reasons"])


def test_sync_any_two_of_three_tolerates_one_loss():
    nodes = [down("pg1"), replica("pg2", 100 * MB), replica("pg3", 99 * MB), down("pg4")]
    result = decide(nodes, sync_standbys=["pg2", "pg3", "pg4"], sync_num=2)
    assert result["safe_to_promote"] is True


def test_different_timelines_reported():
    result = decide([down("pg1"), replica("pg2", 100 * MB, timeline=2), replica("pg3", 90 * MB, timeline=1)])
    assert any("different timelines [1, 2]" in r for r in result["reasons"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "panic"}, "mode must be one of failover, switchover"),
        ({"max_lag_bytes": -1}, "max_lag_bytes must be >= 0"),
        ({"sync_standbys": ["pg9"]}, r"sync_standbys \['pg9'\] are not among the nodes"),
        ({"sync_standbys": ["pg2"], "sync_num": 2}, "sync_num 2 must be between 1 and 1"),
    ],
)
def test_bad_input(kwargs, message):
    with pytest.raises(FailoverInputError, match=message):
        decide([down("pg1"), replica("pg2", 1)], **kwargs)


def test_duplicate_names_refused():
    with pytest.raises(FailoverInputError, match="node names must be unique"):
        decide([replica("pg2", 1), replica("pg2", 2)])


@st.composite
def clusters(draw):
    count = draw(st.integers(min_value=1, max_value=6))
    nodes = []
    for index in range(count):
        kind = draw(st.sampled_from(["primary", "replica", "down"]))
        name = f"n{index}"
        lsn = draw(st.integers(min_value=0, max_value=2**40))
        if kind == "primary":
            nodes.append(primary(name, lsn))
        elif kind == "replica":
            replayed = draw(st.integers(min_value=0, max_value=lsn))
            nodes.append(replica(name, lsn, replayed, priority=draw(st.integers(0, 200))))
        else:
            nodes.append(down(name))
    return nodes


@settings(max_examples=300, deadline=None)
@given(clusters(), st.sampled_from(["failover", "switchover"]), st.integers(min_value=0, max_value=2**41))
def test_invariants(nodes, mode, max_lag):
    result = decide(nodes, mode=mode, max_lag_bytes=max_lag)
    primaries = [n for n in nodes if n.role == "primary"]
    # Never two primaries: with more than one reachable primary nothing is promoted.
    if len(primaries) > 1:
        assert result["safe_to_promote"] is False
    # Failover never promotes beside a live primary.
    if mode == "failover" and primaries:
        assert result["safe_to_promote"] is False
    # The recommendation, when any, is a reachable replica holding the highest received LSN.
    replicas = [n for n in nodes if n.role == "replica"]
    if result["recommended"] is not None:
        chosen = next(n for n in nodes if n.name == result["recommended"])
        assert chosen.role == "replica"
        assert chosen.received_lsn == max(n.received_lsn for n in replicas)
    else:
        assert not replicas
    # Safe implies the bound holds.
    if result["safe_to_promote"]:
        assert result["candidates"][0]["lag_bytes"] <= max_lag
    assert result["reasons"], "every decision explains itself"
