"""Failover decision rules: split brain, modes, ranking, lag bound, synchronous guarantees."""

import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.rehab.scale.plugins.module_utils.pg_failover import (
    FailoverInputError,
    NodeState,
    classify_error,
    decide,
    guard_decide,
    guard_main,
    int_to_lsn,
    inventory_verdict,
    lsn_to_int,
    parse_controldata,
    probe,
    probe_all,
    psycopg2_connector,
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


# --- Error classes, identity, timelines, staleness, the heard-recently rule --------------------


def alive(name, error='FATAL:  password authentication failed for user "rehab_monitor"'):
    return NodeState(name=name, reachable=False, alive=True, error=error)


def streaming(name, received, *, heard=None, news=None, timeline=1, sysid="7", **kwargs):
    node = replica(name, received, timeline=timeline, **kwargs)
    node.heard_seconds_ago, node.last_news_epoch, node.system_identifier = heard, news, sysid
    return node


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ('connection to server at "10.0.0.1", port 5432 failed: Connection refused', "down"),
        ("timeout expired", "down"),
        ('connection to server at "10.0.0.1", port 5432 failed: No route to host', "down"),
        ('could not translate host name "pg1" to address: Name or service not known', "down"),
        ("Network is unreachable", "down"),
        ('FATAL:  password authentication failed for user "rehab_monitor"', "unknown"),
        ("FATAL:  sorry, too many clients already", "unknown"),
        ('FATAL:  no pg_hba.conf entry for host "10.0.0.9", user "rehab_monitor"', "unknown"),
        ("canceling statement due to statement timeout", "unknown"),
        ("FATAL:  the database system is starting up", "unknown"),
    ],
)
def test_error_classes(text, status):
    assert classify_error(text) == status


class FakeConn:
    def __init__(self, fail_query=None):
        self.fail_query = fail_query

    def cursor(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def execute(self, sql, args=None):
        if self.fail_query and sql.strip().startswith("SELECT"):
            raise RuntimeError(self.fail_query)

    def close(self):
        pass


@pytest.mark.parametrize(
    ("connect_error", "query_error", "status"),
    [
        ("could not connect: Connection refused", None, "down"),
        ("FATAL:  sorry, too many clients already", None, "unknown"),
        (None, "ERROR:  canceling statement due to statement timeout", "unknown"),
    ],
)
def test_probe_classifies_errors(connect_error, query_error, status):
    def connect(**_):
        if connect_error:
            raise RuntimeError(connect_error)
        return FakeConn(query_error)

    node = probe({"name": "pg1", "host": "10.0.0.1"}, connect)
    assert node.status == status
    assert node.error == (connect_error or query_error)


def test_probe_all_is_concurrent():
    barrier = threading.Barrier(3, timeout=5)

    def connect(**_):
        barrier.wait()  # deadlocks (times out) unless all three connect at once
        raise RuntimeError("timeout expired")

    nodes = probe_all([{"name": f"pg{i}", "host": f"10.0.0.{i}"} for i in range(3)], connect)
    assert [n.status for n in nodes] == ["down"] * 3


def test_live_primary_refusing_the_login_blocks_failover():
    result = decide([alive("pg1"), replica("pg2", 100 * MB)])
    assert result["safe_to_promote"] is False
    assert result["unknown"] == ["pg1"]
    assert any(
        "pg1 is alive but could not be classified (FATAL:  password authentication" in r for r in result["reasons"]
    )


def test_down_nodes_listed_with_their_error():
    result = decide([down("pg1"), replica("pg2", 100 * MB)])
    assert result["down"] == ["pg1"]
    assert result["reasons"][0] == "down: pg1 (connection refused)"
    assert result["safe_to_promote"] is True


def test_replica_that_heard_from_primary_recently_blocks_failover_and_waiting_may_help():
    nodes = [down("pg1"), streaming("pg2", 100 * MB, heard=0.7), streaming("pg3", 100 * MB, heard=9.0)]
    result = decide(nodes, heard_bound_seconds=4)
    assert result["safe_to_promote"] is False
    assert result["waiting_may_help"] is True
    assert any("pg2 heard from it 0.7 s ago (bound 4 s)" in r for r in result["reasons"])
    assert decide(nodes, heard_bound_seconds=0.5)["safe_to_promote"] is True


def test_heard_rule_with_an_unknown_node_is_not_transient():
    nodes = [alive("pg1"), streaming("pg2", 100 * MB, heard=0.7)]
    assert decide(nodes, heard_bound_seconds=4)["waiting_may_help"] is False


def test_rank_by_timeline_before_lsn():
    # pg3 received more WAL, but on the old timeline: pg2 is on the newer one.
    nodes = [down("pg1"), replica("pg2", 50 * MB, timeline=3), replica("pg3", 90 * MB, timeline=2)]
    result = decide(nodes, max_lag_bytes=2**40)
    assert result["recommended"] == "pg2"
    assert any("pg3 behind pg2's timeline 3 will need pg_rewind" in r for r in result["reasons"])


def test_stale_replica_is_not_a_candidate_measured_against_survivors():
    now = 1_800_000_000.0
    nodes = [
        down("pg1"),
        streaming("pg2", 10 * MB, news=now - 86_400),  # stopped receiving a day ago
        streaming("pg3", 100 * MB, news=now - 2),
    ]
    result = decide(nodes, stale_bound_seconds=30, max_lag_bytes=2**40)
    assert result["stale"] == ["pg2"]
    assert [c["name"] for c in result["candidates"]] == ["pg3"]
    # The only survivor is measured against the survivors (itself): an on-call who starts late
    # still has a candidate.
    late = decide([down("pg1"), streaming("pg2", 10 * MB, news=now - 86_400)], stale_bound_seconds=30)
    assert late["recommended"] == "pg2"


def test_stale_rule_never_drops_a_replica_holding_the_most_wal():
    now = 1_800_000_000.0
    # pg2's receiver restarted, so its news is its last replayed commit, long ago; it holds as
    # much WAL as pg3, so it is not stale.
    nodes = [down("pg1"), streaming("pg2", 100 * MB, news=now - 600), streaming("pg3", 100 * MB, news=now)]
    assert decide(nodes, stale_bound_seconds=30)["stale"] == []


def test_foreign_node_ignored():
    nodes = [down("pg1"), streaming("pg2", 100 * MB, sysid="7"), streaming("pg3", 900 * MB, sysid="8")]
    result = decide(nodes, system_identifier="7")
    assert result["foreign"] == ["pg3"]
    assert result["recommended"] == "pg2"
    assert any("pg3 belongs to another cluster (system identifier 8" in r for r in result["reasons"])


def test_identity_tie_is_unsafe():
    nodes = [streaming("pg2", 100 * MB, sysid="7"), streaming("pg3", 100 * MB, sysid="8")]
    result = decide(nodes)
    assert result["safe_to_promote"] is False
    assert any(r.startswith("IDENTITY UNCLEAR") for r in result["reasons"])


def test_identity_by_majority_without_expected_value():
    nodes = [
        down("pg1"),
        streaming("pg2", 1, sysid="7"),
        streaming("pg3", 1, sysid="7"),
        streaming("pg4", 5, sysid="9"),
    ]
    result = decide(nodes)
    assert result["system_identifier"] == "7"
    assert result["foreign"] == ["pg4"]


def test_switchover_to_a_named_target_waits_for_it():
    nodes = [primary(lsn=100 * MB), replica("pg2", 100 * MB), replica("pg3", 99 * MB)]
    result = decide(nodes, mode="switchover", target="pg3")
    assert result["recommended"] == "pg3"
    assert result["safe_to_promote"] is False
    assert result["waiting_may_help"] is True
    assert decide(nodes, mode="switchover", target="pg9")["recommended"] is None


def test_failover_target_must_hold_the_most_wal():
    nodes = [down("pg1"), replica("pg2", 100 * MB), replica("pg3", 99 * MB)]
    result = decide(nodes, target="pg3", max_lag_bytes=2**40)
    assert result["safe_to_promote"] is False
    assert any("pg3 holds less WAL than pg2" in r for r in result["reasons"])


# --- The start guard -----------------------------------------------------------------------------


def peer(name, role="replica", timeline=1, sysid="7"):
    if role == "down":
        return down(name)
    node = NodeState(name=name, reachable=True, in_recovery=role == "replica", timeline=timeline)
    node.system_identifier = sysid
    return node


OWN = {"system_identifier": "7", "timeline": 1, "standby": False, "fenced": None, "override": False}


@pytest.mark.parametrize(
    ("own", "peers", "start", "sticky", "reason"),
    [
        ({**OWN, "standby": True}, [peer("b", "primary")], True, False, "standby.signal present"),
        ({**OWN, "fenced": "failover to b"}, [], False, True, "fenced: failover to b"),
        # a fenced standby stays down too: only rejoin (or an override) clears the mark
        ({**OWN, "fenced": "failover to b", "standby": True}, [], False, True, "fenced: failover to b"),
        ({**OWN, "fenced": "failover to b", "override": True}, [], True, False, "on-call override"),
        ({**OWN, "override": True}, [peer("b", "primary")], True, False, "on-call override"),
        # single-node cluster: its own majority
        (OWN, [], True, False, "reached 1 of 1 members (majority 1)"),
        # full-cluster restart: the others answer as standbys on the same timeline
        (OWN, [peer("b"), peer("c"), peer("d")], True, False, "reached 4 of 4"),
        (OWN, [peer("b"), peer("c"), peer("d", "down")], True, False, "reached 3 of 4 members (majority 3)"),
        (OWN, [peer("b"), peer("c", "down"), peer("d", "down")], False, False, "reached 2 of 4 members, 3 needed"),
        # a returning old primary finds the promoted node
        (OWN, [peer("b", "primary", timeline=2), peer("c", timeline=2)], False, True, "another node accepts writes: b"),
        # ... or only a replica that is on the newer timeline
        (OWN, [peer("b", "down"), peer("c", timeline=2)], False, True, "a newer timeline than this node's 1"),
        # cut off from everyone
        (OWN, [peer("b", "down"), peer("c", "down")], False, False, "reached 1 of 3 members, 2 needed"),
        # two-node cluster: needs both
        (OWN, [peer("b", "down")], False, False, "reached 1 of 2 members, 2 needed"),
        (OWN, [peer("b")], True, False, "reached 2 of 2"),
        # a node of another cluster does not count, either way
        (OWN, [peer("b", "primary", sysid="9"), peer("c")], True, False, "reached 2 of 2"),
        # alive but unknown: not counted towards the majority
        (OWN, [alive("b"), peer("c", "down")], False, False, "b (unknown: FATAL"),
    ],
)
def test_guard_decide(own, peers, start, sticky, reason):
    verdict = guard_decide(own, peers)
    assert (verdict["start"], verdict["sticky"]) == (start, sticky)
    assert reason in verdict["reason"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["replica", "primary", "down", "newer"]), max_size=6))
def test_guard_never_starts_beside_a_primary_or_behind_a_timeline(kinds):
    peers = [
        peer(f"n{i}", "replica" if kind == "newer" else kind, timeline=2 if kind == "newer" else 1)
        for i, kind in enumerate(kinds)
    ]
    verdict = guard_decide(OWN, peers)
    if "primary" in kinds or "newer" in kinds:
        assert verdict["start"] is False and verdict["sticky"] is True
    if verdict["start"]:
        assert 1 + kinds.count("replica") > (1 + len(kinds)) / 2


CONTROLDATA = """pg_control version number:            1300
Database system identifier:           7301234567890123456
Database cluster state:               in production
Latest checkpoint's TimeLineID:       2
"""


def test_parse_controldata():
    assert parse_controldata(CONTROLDATA) == {
        "system_identifier": "7301234567890123456",
        "timeline": 2,
        "state": "in production",
    }


def _guard_config(tmp_path, peers):
    data = tmp_path / "data"
    data.mkdir()
    config = {
        "name": "pg1",
        "data_dir": str(data),
        "pg_controldata": "/bin/false",
        "peers": peers,
        "login_user": "rehab_monitor",
        "passfile": str(tmp_path / "pgpass"),
        "wait_seconds": 5,
        "connect_timeout": 2,
        "state_file": str(tmp_path / "state.json"),
        "fence_file": str(tmp_path / "fenced"),
        "override_file": str(tmp_path / "override"),
    }
    path = tmp_path / "guard.json"
    path.write_text(json.dumps(config))
    return path, data


def _peer_connect(rows):
    """connect() answering the probe query with a row per host, or raising for a missing host."""

    class Conn(FakeConn):
        def __init__(self, row):
            super().__init__()
            self.row, self.description = row, [(k,) for k in row]

        def fetchone(self):
            return tuple(self.row.values())

    def connect(host, **_):
        if host not in rows:
            raise RuntimeError("Connection refused")
        return Conn(rows[host])

    return connect


def _row(in_recovery, timeline, sysid="7301234567890123456"):
    return {
        "in_recovery": in_recovery,
        "system_identifier": sysid,
        "current_lsn": None if in_recovery else "0/3000000",
        "received_lsn": "0/3000000" if in_recovery else None,
        "replayed_lsn": "0/3000000" if in_recovery else None,
        "timeline": timeline,
        "replay_delay_seconds": None,
        "heard_seconds_ago": None,
        "last_news_epoch": None,
    }


def test_guard_main_refuses_a_returning_old_primary_and_fences_it(tmp_path):
    path, _ = _guard_config(tmp_path, [{"name": "pg2", "host": "10.0.0.2"}, {"name": "pg3", "host": "10.0.0.3"}])
    connect = _peer_connect({"10.0.0.2": _row(False, 3), "10.0.0.3": _row(True, 3)})
    controldata = CONTROLDATA.replace("TimeLineID:       2", "TimeLineID:       1")
    assert guard_main(str(path), connect=connect, controldata=lambda: controldata, sleep=lambda _: None) == 1
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["started"] is False and "pg2 (timeline 3)" in state["reason"]
    assert "another node accepts writes: pg2" in (tmp_path / "fenced").read_text()
    # Sticky: later, even with every peer gone, it stays down.
    assert guard_main(str(path), connect=_peer_connect({}), controldata=lambda: controldata, sleep=lambda _: None) == 1


def test_guard_main_waits_for_a_majority_then_starts(tmp_path):
    path, _ = _guard_config(tmp_path, [{"name": "pg2", "host": "10.0.0.2"}, {"name": "pg3", "host": "10.0.0.3"}])
    answers = iter([{}, {"10.0.0.2": _row(True, 2)}])  # first nobody, then pg2 is back as a standby
    rows = {}

    def connect(host, **kwargs):
        return _peer_connect(rows)(host, **kwargs)

    def sleep(_):
        rows.update(next(answers))

    rows.update(next(answers))
    assert guard_main(str(path), connect=connect, controldata=lambda: CONTROLDATA, sleep=sleep) == 0
    assert "reached 2 of 3 members" in json.loads((tmp_path / "state.json").read_text())["reason"]
    assert not (tmp_path / "fenced").exists()


def test_guard_main_override_is_used_once(tmp_path):
    path, _ = _guard_config(tmp_path, [{"name": "pg2", "host": "10.0.0.2"}])
    (tmp_path / "override").write_text("on-call 2026-11-27\n")
    assert guard_main(str(path), connect=_peer_connect({}), controldata=lambda: CONTROLDATA, sleep=lambda _: None) == 0
    assert not (tmp_path / "override").exists()


def test_guard_main_lets_a_standby_start_without_probing(tmp_path):
    path, data = _guard_config(tmp_path, [{"name": "pg2", "host": "10.0.0.2"}])
    (data / "standby.signal").write_text("")

    def connect(**_):
        raise AssertionError("a standby needs no probe")

    assert guard_main(str(path), connect=connect, controldata=lambda: CONTROLDATA, sleep=lambda _: None) == 0


# --- The node against the inventory ---------------------------------------------------------------

RUNNING_PRIMARY = {"initialized": True, "running": True, "in_recovery": False, "user_databases": 1}
RUNNING_STANDBY = {"initialized": True, "running": True, "in_recovery": True, "user_databases": 1, "timeline": 2}


@pytest.mark.parametrize(
    ("role", "state", "ok", "words"),
    [
        ("replica", {"initialized": False}, True, "no cluster yet"),
        ("primary", RUNNING_PRIMARY, True, "consistent"),
        ("replica", RUNNING_STANDBY, True, "consistent"),
        # the fresh cluster Debian's package creates on a future replica: the role rebuilds it
        ("replica", {**RUNNING_PRIMARY, "user_databases": 0}, True, "consistent"),
        ("replica", RUNNING_PRIMARY, False, "must list pg2 under pg_primary and pg1 under pg_replicas"),
        ("primary", RUNNING_STANDBY, False, "is a standby (timeline 2), but the inventory lists it under pg_primary"),
        ("primary", {"initialized": True, "running": False, "fenced": "failover to pg2"}, False, "rejoin_host=pg2"),
        (
            "primary",
            {
                "initialized": True,
                "running": False,
                "guard": {"started": False, "reason": "another node accepts writes"},
            },
            False,
            "start guard refused to start it (another node accepts writes)",
        ),
        ("primary", {"initialized": True, "running": False, "standby_signal": True}, False, "marked a standby"),
        ("primary", {"initialized": True, "running": False}, True, "consistent"),
    ],
)
def test_inventory_verdict(role, state, ok, words):
    verdict, message = inventory_verdict("pg2", role, state, "pg1")
    assert verdict is ok
    assert words in message


@pytest.mark.parametrize(
    ("reachable", "sync_num", "safe"),
    [
        # ANY 1 over 3 nodes: the lost primary waited for 1 of the other 2; both must answer.
        (["pg2", "pg3"], 1, True),
        (["pg2"], 1, False),
        # ANY 2 of 4 nodes: 3 standbys, 2 acknowledged each commit; 2 reachable suffice.
        (["pg2", "pg3"], 2, True),
    ],
)
def test_sync_members_without_knowing_the_old_primary(reachable, sync_num, safe):
    names = ["pg1", "pg2", "pg3"] + (["pg4"] if sync_num == 2 else [])
    nodes = [replica(n, 100 * MB) if n in reachable else down(n) for n in names]
    result = decide(nodes, sync_members=names, sync_num=sync_num)
    assert result["safe_to_promote"] is safe


def test_sync_rule_skipped_in_switchover_with_a_live_primary():
    nodes = [primary(lsn=100 * MB), replica("pg2", 100 * MB), down("pg3")]
    assert decide(nodes, mode="switchover", sync_members=["pg1", "pg2", "pg3"])["safe_to_promote"] is True


def test_received_is_at_least_replayed():
    # After pg_rewind, streaming restarts at a segment start: received < replayed until new WAL.
    row = {**_row(True, 2), "received_lsn": "0/4000000", "replayed_lsn": "0/40C6750"}
    node = probe({"name": "pg1", "host": "h"}, _peer_connect({"h": row}))
    assert node.received_lsn == lsn_to_int("0/40C6750")


def recording_driver(calls):
    """A stand-in for the psycopg2 module that records each connect()'s keyword arguments."""

    class Driver:
        @staticmethod
        def connect(**kwargs):
            calls.append(kwargs)
            return FakeConn()

    return Driver


def test_psycopg2_connector_passes_the_login_and_sets_autocommit():
    calls = []
    Driver = recording_driver(calls)  # noqa: N806 - stands for a module
    conn = psycopg2_connector(Driver, dbname="postgres", user="rehab_monitor", passfile="/p")(
        host="10.0.0.1", port=5432, connect_timeout=2
    )
    assert conn.autocommit is True
    assert calls == [
        {
            "host": "10.0.0.1",
            "port": 5432,
            "connect_timeout": 2,
            "dbname": "postgres",
            "user": "rehab_monitor",
            "passfile": "/p",
        }
    ]


def test_psycopg2_connector_passes_tls_settings_and_leaves_unset_ones_to_libpq():
    calls = []
    Driver = recording_driver(calls)  # noqa: N806 - stands for a module

    # The start guard's configuration carries sslmode and sslrootcert (TLS) or neither (older files).
    psycopg2_connector(Driver, user="m", sslmode="verify-full", sslrootcert="/etc/rehab-scale/tls/ca.pem")(
        host="10.0.0.1", port=5432, connect_timeout=2
    )
    psycopg2_connector(Driver, user="m", sslmode=None, sslrootcert=None)(host="10.0.0.1", port=5432, connect_timeout=2)
    assert calls[0]["sslmode"] == "verify-full"
    assert calls[0]["sslrootcert"] == "/etc/rehab-scale/tls/ca.pem"
    assert "sslmode" not in calls[1] and "sslrootcert" not in calls[1]


def test_failover_waits_until_every_replica_replayed_what_it_holds():
    # pg2's receiver reconnected: its received LSN restarted at a segment start and its replay has
    # not reached the end of its local WAL yet, so its position is not final.
    settling = streaming("pg2", 100 * MB)
    settling.replay_settled = False
    nodes = [down("pg1"), settling, streaming("pg3", 90 * MB)]
    result = decide(nodes)
    assert result["safe_to_promote"] is False
    assert result["waiting_may_help"] is True
    assert any(
        "still replaying the WAL they hold (positions not final yet): pg2 at 0/6400000" in r for r in result["reasons"]
    )
    settling.replay_settled = True
    assert decide(nodes)["safe_to_promote"] is True


def test_paused_replay_refuses_without_waiting():
    paused = streaming("pg2", 100 * MB)
    paused.replay_paused, paused.replay_settled = True, False
    result = decide([down("pg1"), paused, streaming("pg3", 100 * MB)])
    assert result["safe_to_promote"] is False
    assert result["waiting_may_help"] is False
    assert any(r.startswith("replay is paused on pg2") for r in result["reasons"])


def test_skipped_node_is_down_without_a_connection():
    def connect(**_):
        raise AssertionError("a skipped node is not contacted")

    node = probe({"name": "pg1", "host": "10.0.0.1", "skip": True}, connect)
    assert (node.status, node.error) == ("down", "not probed: confirmed dead")
