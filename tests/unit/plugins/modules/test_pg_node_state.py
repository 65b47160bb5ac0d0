"""pg_node_state: what a node is, read from a fake data directory and fake commands."""

import json

from ansible_collections.rehab.scale.plugins.modules.pg_node_state import read_state

CONTROLDATA = (
    "Database system identifier:           42\n"
    "Latest checkpoint's TimeLineID:       3\n"
    "Database cluster state:               shut down\n"
)


def params(tmp_path, **extra):
    guard = tmp_path / "guard"
    return {
        "data_dir": "/var/lib/postgresql/15/main",
        "pg_controldata": "/usr/lib/postgresql/15/bin/pg_controldata",
        "port": 5432,
        "fence_file": str(guard / "fenced"),
        "guard_state": str(guard / "state.json"),
        **extra,
    }


def test_fresh_host_without_postgresql(tmp_path, monkeypatch):
    monkeypatch.setattr("os.path.exists", lambda path: False)
    state = read_state(params(tmp_path), run=lambda argv: (127, "", "no such file"))
    assert state["initialized"] is False and state["running"] is False


def test_stopped_fenced_node(tmp_path, monkeypatch):
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "fenced").write_text("failover to pg2 at 2026-11-27T14:00:00Z\n")
    (guard / "state.json").write_text(json.dumps({"started": False, "reason": "fenced"}))
    real_exists = __import__("os").path.exists
    monkeypatch.setattr(
        "os.path.exists",
        lambda path: path.endswith("PG_VERSION") or (not path.endswith("standby.signal") and real_exists(path)),
    )

    def run(argv):
        if argv[0].endswith("pg_controldata"):
            return 0, CONTROLDATA, ""
        return 2, "", "psql: error: connection to server on socket failed: No such file or directory"

    state = read_state(params(tmp_path), run)
    assert state["initialized"] and not state["running"]
    assert state["fenced"].startswith("failover to pg2")
    assert state["guard"]["started"] is False
    assert (state["timeline"], state["system_identifier"], state["cluster_state"]) == (3, "42", "shut down")


def test_running_standby(tmp_path, monkeypatch):
    monkeypatch.setattr("os.path.exists", lambda path: path.endswith(("PG_VERSION", "standby.signal")))

    def run(argv):
        return (0, CONTROLDATA, "") if argv[0].endswith("pg_controldata") else (0, "t|1\n", "")

    state = read_state(params(tmp_path), run)
    assert state["running"] and state["in_recovery"] and state["user_databases"] == 1 and state["standby_signal"]


def test_an_empty_fence_mark_still_fences(tmp_path, monkeypatch):
    """An on-call `touch fenced` fences: the module and the guard read the mark the same way."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "fenced").write_text("")
    state = read_state(params(tmp_path), run=lambda argv: (127, "", "not installed"))
    assert state["fenced"] == "fenced"
