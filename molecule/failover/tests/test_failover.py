"""Streaming replication and the on-call playbooks, on real PostgreSQL (1 primary, 2 sync replicas).

The tests run in file order and build on each other: replication works; failover is refused while
the primary is healthy, while it refuses the probe's login, and while only the control node is cut
off from it (its replicas still hear it); a writer that connects like the app (libpq multi-host,
read-write) commits numbered rows and the primary's container is killed; failover is refused while
the best replica lags past the bound; check mode prints the plan and whom it would fence; failover
stops before promoting while the dead host cannot be fenced, then promotes once on-call confirms it
dead; no acknowledged row is lost; the other replica follows the new timeline; writes resume; the
old primary's container comes back and for 60 s never accepts a write (its start guard), while a
converge with the stale inventory is refused before any change; rejoin brings it back as a replica
and refuses to rewind the only primary; switchover back; every container restarts at once and the
same primary comes back writable. Traffic stays on the scenario's own network.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(ROOT / "tests"))
from rehab_testlib import AckedWriter as Writer  # noqa: E402
from rehab_testlib import container_address as address  # noqa: E402
from rehab_testlib import (  # noqa: E402
    container_gateway,
    docker_exec,
    run_playbook,
    start_lab_container,
    try_write,
    wait_booted,
    write_pg_inventory,
)
from rehab_testlib import psql as sql  # noqa: E402

INVENTORY = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "")).parent
NODES = ["pgf-1", "pgf-2", "pgf-3"]
GUARD_DIR = "/var/lib/postgresql/15/main.guard"  # roles/postgresql/vars/main.yml, __postgresql_guard_dir
STATE = {}  # shared by the ordered tests below: they drive the cluster from the controller, once


def in_recovery(node):
    return sql(node, "select pg_is_in_recovery()") == "t"


def sql_or_none(node, query, db="rehab"):
    try:
        return sql(node, query, db=db)
    except AssertionError:  # PostgreSQL not (yet) up
        return None


def playbook(name, *extra):
    return run_playbook(ROOT / "playbooks" / name, *extra, inventory=INVENTORY)


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def test_replicas_stream_synchronously():
    assert not in_recovery("pgf-1")
    assert in_recovery("pgf-2") and in_recovery("pgf-3")
    rows = sql("pgf-1", "select application_name, state, sync_state from pg_stat_replication order by 1").splitlines()
    assert rows == ["pgf_2|streaming|quorum", "pgf_3|streaming|quorum"]
    # Replication runs over TLS (hostssl only; primary_conninfo verifies the primary's certificate).
    tls = "select bool_and(s.ssl), min(s.version) from pg_stat_replication r join pg_stat_ssl s using (pid)"
    assert sql("pgf-1", tls, db="postgres") in ("t|TLSv1.2", "t|TLSv1.3")
    assert sql("pgf-1", "select count(*) from pg_replication_slots where active") == "2"


def test_write_on_primary_read_on_replicas():
    sql("pgf-1", "create table if not exists acked_writes (id bigint primary key, at timestamptz default now())")
    sql("pgf-1", "alter table acked_writes owner to rehab")
    sql("pgf-1", "insert into acked_writes (id) values (0) on conflict do nothing")
    for node in ("pgf-2", "pgf-3"):
        wait_for(lambda n=node: sql(n, "select count(*) from acked_writes where id = 0") == "1", what=f"row on {node}")


def test_lag_exposed_for_prometheus():
    primary = subprocess.run(
        ["docker", "exec", "pgf-1", "curl", "-sf", "http://127.0.0.1:9187/metrics"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'pg_stat_replication_pg_wal_lsn_diff{application_name="pgf_2"' in primary  # bytes, per replica
    for node in ("pgf-2", "pgf-3"):
        metrics = subprocess.run(
            ["docker", "exec", node, "curl", "-sf", "http://127.0.0.1:9187/metrics"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "\npg_replication_lag{" in metrics  # seconds behind, on each replica
        assert "\npg_replication_is_replica{" in metrics and "} 1" in metrics


def test_failover_refused_while_primary_healthy():
    out = playbook("failover.yml")
    assert out.returncode != 0
    assert "FAILOVER REFUSED, nothing was changed" in out.text
    assert "pgf-1 still accepts writes" in out.text
    assert not in_recovery("pgf-1") and in_recovery("pgf-2") and in_recovery("pgf-3")


def test_guard_installed_on_every_node():
    for node in NODES:
        unit = docker_exec(node, "systemctl", "cat", "postgresql@15-main").stdout
        assert "ExecStartPre=/usr/bin/python3 /usr/local/lib/rehab-scale/pg_failover.py guard" in unit
    assert sql("pgf-1", "show wal_sender_timeout", db="postgres") == "4s"


def test_failover_refused_while_primary_refuses_the_probe_login():
    """Alive but refusing the monitoring role's login (pg_hba on pgf-1 only): role unknown, unsafe."""
    hba = "/etc/postgresql/15/main/pg_hba.conf"
    control = container_gateway("pgf-1")
    docker_exec("pgf-1", "cp", hba, "/root/pg_hba.conf.saved")
    docker_exec("pgf-1", "sed", "-i", f"1i host postgres rehab_monitor {control}/32 reject", hba)
    sql("pgf-1", "select pg_reload_conf()", db="postgres")
    try:
        out = playbook("failover.yml")
        assert out.returncode != 0
        assert "FAILOVER REFUSED, nothing was changed" in out.text
        assert "pgf-1 is alive but could not be classified" in out.text
        assert "pg_hba.conf rejects connection" in out.text  # the node's own error, printed
    finally:
        docker_exec("pgf-1", "cp", "/root/pg_hba.conf.saved", hba)
        sql("pgf-1", "select pg_reload_conf()", db="postgres")
    assert not in_recovery("pgf-1") and in_recovery("pgf-2") and in_recovery("pgf-3")


def test_failover_refused_while_only_the_control_node_is_cut_off():
    """An nftables rule in pgf-1 drops the control node's packets; pgf-2 and pgf-3 still stream."""
    install = docker_exec("pgf-1", "sh", "-c", "command -v nft || apt-get install -y -q nftables", timeout=300)
    assert install.returncode == 0, install.stdout + install.stderr
    control = container_gateway("pgf-1")
    for command in (
        ["add", "table", "inet", "rehab_cut"],
        ["add", "chain", "inet", "rehab_cut", "input", "{ type filter hook input priority 0; }"],
        ["add", "rule", "inet", "rehab_cut", "input", "ip", "saddr", control, "drop"],
    ):
        done = docker_exec("pgf-1", "nft", *command)
        assert done.returncode == 0, done.stderr
    try:
        out = playbook("failover.yml")
        assert out.returncode != 0
        assert "FAILOVER REFUSED, nothing was changed" in out.text
        assert "the old primary is alive for its replicas" in out.text
        assert "down: pgf-1 (" in out.text and "timeout expired" in out.text
    finally:
        docker_exec("pgf-1", "nft", "delete", "table", "inet", "rehab_cut")
    assert not in_recovery("pgf-1") and in_recovery("pgf-2") and in_recovery("pgf-3")


def test_primary_killed_under_write_load():
    # Like the app: every node listed, libpq picks the one that accepts writes.
    writer = Writer(",".join(address(n) for n in NODES), first_id=1)
    writer.start()
    wait_for(lambda: len(writer.acked) >= 200, what="200 acknowledged writes")
    # Replay paused on both replicas (WAL still arrives and is flushed, so commits are still
    # acknowledged): the unreplayed backlog is what the lag bound must catch below.
    for node in ("pgf-2", "pgf-3"):
        sql(node, "select pg_wal_replay_pause()")
    count = len(writer.acked)
    wait_for(lambda: len(writer.acked) >= count + 200, what="200 more acknowledged writes")
    subprocess.run(["docker", "kill", "--signal", "KILL", "pgf-1"], check=True, capture_output=True)
    writer.join(timeout=30)
    assert writer.error is not None, "the writer should have lost its connection"
    STATE["acked"] = list(writer.acked)
    STATE["next_id"] = writer.next_id + 1


def test_paused_replicas_not_promoted():
    out = playbook("failover.yml", "-e", "postgresql_failover_max_lag_bytes=1")
    assert out.returncode != 0
    assert "FAILOVER REFUSED, nothing was changed" in out.text
    # Replay is paused on both replicas: their positions are not final, so nothing is promoted.
    assert "replay is paused on pgf-2, pgf-3" in out.text
    assert in_recovery("pgf-2") and in_recovery("pgf-3")


def test_check_mode_prints_plan_and_changes_nothing():
    for node in ("pgf-2", "pgf-3"):
        sql(node, "select pg_wal_replay_resume()")
        wait_for(
            lambda n=node: sql(n, "select pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()") == "t",
            what=f"{node} to replay its backlog",
        )
    out = playbook("failover.yml", "--check")
    assert out.returncode == 0, out.stdout[-3000:]
    assert "recommended: pgf-" in out.text
    assert "safe to promote: True" in out.text
    assert "would fence (stop and mask PostgreSQL over the host's connection" in out.text
    assert "mark it fenced for the start guard): pgf-1;" in out.text
    assert in_recovery("pgf-2") and in_recovery("pgf-3")


def test_failover_stops_when_the_dead_host_cannot_be_fenced():
    out = playbook("failover.yml")
    assert out.returncode != 0
    assert "FAILOVER STOPPED before promoting: could not fence pgf-1" in out.text
    assert "-e confirm_dead=pgf-1" in out.text
    assert in_recovery("pgf-2") and in_recovery("pgf-3")


def test_failover_promotes_best_replica():
    out = playbook("failover.yml", "-e", "confirm_dead=pgf-1")
    assert out.returncode == 0, out.stdout[-4000:]
    promoted = [n for n in ("pgf-2", "pgf-3") if not in_recovery(n)]
    assert len(promoted) == 1, "exactly one new primary"
    STATE["primary"], STATE["follower"] = promoted[0], ({"pgf-2", "pgf-3"} - set(promoted)).pop()
    assert f"promoted: {STATE['primary']}" in out.text
    STATE["failover_seconds"] = out.seconds
    print(f"failover.yml took {out.seconds:.1f} s")


def test_no_acknowledged_row_lost():
    acked = STATE["acked"]
    present = sql(STATE["primary"], f"select count(*) from acked_writes where id between 1 and {max(acked)}")
    assert int(present) >= len(acked)
    missing = sql(
        STATE["primary"],
        f"select count(*) from unnest(array{acked}::bigint[]) a(id) "
        "where not exists (select 1 from acked_writes w where w.id = a.id)",
    )
    assert missing == "0", f"{missing} acknowledged rows lost"


def test_other_replica_follows_new_timeline():
    follower, primary = STATE["follower"], STATE["primary"]
    assert in_recovery(follower)
    receiver = sql(follower, "select status, sender_host, received_tli from pg_stat_wal_receiver", db="postgres")
    assert receiver == f"streaming|{address(primary)}|2"


def test_writer_resumes_on_new_primary():
    writer = Writer(address(STATE["primary"]), first_id=STATE["next_id"])
    writer.start()
    wait_for(lambda: len(writer.acked) >= 50, what="writes on the new primary")
    writer.stop.set()
    writer.join(timeout=10)
    STATE["last_id"] = writer.acked[-1]
    wait_for(
        lambda: sql(STATE["follower"], f"select count(*) from acked_writes where id = {STATE['last_id']}") == "1",
        what="the new writes on the follower",
    )


def test_returning_old_primary_never_accepts_a_write():
    """The killed host boots again: its start guard finds the promoted node and keeps it down."""
    subprocess.run(["docker", "start", "pgf-1"], check=True, capture_output=True)
    booted = time.monotonic()
    assert wait_booted("pgf-1"), "pgf-1 did not boot"
    pgf1, row, accepted, probes = address("pgf-1"), 50_000_000, [], 0
    while time.monotonic() - booted < 60:
        probes += 1
        if try_write(pgf1, row + probes):
            accepted.append(row + probes)
        time.sleep(0.5)
    assert accepted == [], f"pgf-1 accepted writes after its return: {accepted}"
    assert probes > 60
    state = docker_exec("pgf-1", "cat", f"{GUARD_DIR}/state.json").stdout
    assert '"started": false' in state
    assert f"another node accepts writes: {STATE['primary']} (timeline 2)" in state
    assert "another node accepts writes" in docker_exec("pgf-1", "cat", f"{GUARD_DIR}/fenced").stdout


def test_converge_with_the_stale_inventory_is_refused_before_any_change():
    """The scenario's inventory still says pgf-1 is the primary: the role refuses on every node."""
    before = {n: sql(n, "select pg_postmaster_start_time()", db="postgres") for n in ("pgf-2", "pgf-3")}
    out = run_playbook(Path(__file__).resolve().parent.parent / "converge.yml", inventory=INVENTORY)
    assert out.returncode != 0
    assert "STALE INVENTORY for the postgresql cluster" in out.text
    assert f"the inventory must list {STATE['primary']} under pg_primary and pgf-1 under pg_replicas" in out.text
    assert "pgf-1 is fenced" in out.text
    # Nothing changed: the promoted node is still the only primary and the follower streams from it.
    assert not in_recovery(STATE["primary"]) and in_recovery(STATE["follower"])
    receiver = sql(STATE["follower"], "select status, sender_host from pg_stat_wal_receiver", db="postgres")
    assert receiver == f"streaming|{address(STATE['primary'])}"
    assert {n: sql(n, "select pg_postmaster_start_time()", db="postgres") for n in ("pgf-2", "pgf-3")} == before
    assert not re.search(r"changed=[1-9]", out.stdout.split("PLAY RECAP")[-1]), out.stdout[-2000:]


def test_rejoin_refuses_to_rewind_the_only_primary():
    out = playbook("rejoin.yml", "-e", f"rejoin_host={STATE['primary']}")
    assert out.returncode != 0
    assert "REJOIN REFUSED, nothing was changed" in out.text
    assert f"{STATE['primary']} is the only primary" in out.text or "exactly one is needed" in out.text
    assert not in_recovery(STATE["primary"])


def test_rejoin_old_primary_as_replica():
    out = playbook("rejoin.yml", "-e", "rejoin_host=pgf-1")
    assert out.returncode == 0, out.stdout[-4000:]
    assert in_recovery("pgf-1")
    assert sql("pgf-1", "select status, sender_host from pg_stat_wal_receiver", db="postgres") == (
        f"streaming|{address(STATE['primary'])}"
    )
    wait_for(
        lambda: sql("pgf-1", f"select count(*) from acked_writes where id = {STATE['last_id']}") == "1",
        what="post-failover rows on the rejoined node",
    )


def test_switchover_check_mode_changes_nothing():
    out = playbook("switchover.yml", "--check", "-e", "switchover_to=pgf-1")
    assert out.returncode == 0, out.stdout[-3000:]
    assert f"primary: {STATE['primary']}; switch to: pgf-1" in out.text
    assert not in_recovery(STATE["primary"]) and in_recovery("pgf-1")


def test_switchover_back_to_pgf1_loses_nothing():
    old = STATE["primary"]
    sql(old, f"insert into acked_writes (id) values ({STATE['last_id'] + 1})")  # acknowledged before the switch
    out = playbook("switchover.yml", "-e", "switchover_to=pgf-1")
    assert out.returncode == 0, out.stdout[-4000:]
    assert not in_recovery("pgf-1")
    assert in_recovery(old) and in_recovery(STATE["follower"])
    assert sql("pgf-1", f"select count(*) from acked_writes where id = {STATE['last_id'] + 1}") == "1"
    for node in (old, STATE["follower"]):
        wait_for(
            lambda n=node: (
                sql(n, "select status, sender_host from pg_stat_wal_receiver", db="postgres")
                == f"streaming|{address('pgf-1')}"
            ),
            what=f"{node} to stream from pgf-1",
        )
    sql("pgf-1", f"insert into acked_writes (id) values ({STATE['last_id'] + 2})")  # sync: a standby confirms


def test_every_container_restarted_at_once_brings_the_same_primary_back():
    (primary,) = [n for n in NODES if not in_recovery(n)]
    subprocess.run(["docker", "restart", "--time", "0", *NODES], check=True, capture_output=True)
    for node in NODES:
        assert wait_booted(node), f"{node} did not boot"
    wait_for(lambda: sql_or_none(primary, "select pg_is_in_recovery()") == "f", timeout=90, what=f"{primary} writable")
    for node in set(NODES) - {primary}:
        assert in_recovery(node)
        wait_for(
            lambda n=node: (
                sql_or_none(n, "select status, sender_host from pg_stat_wal_receiver", db="postgres")
                == f"streaming|{address(primary)}"
            ),
            what=f"{node} to stream from {primary} again",
        )
    sql(primary, f"insert into acked_writes (id) values ({STATE['last_id'] + 3})")  # sync: a standby confirms
    # It started on reaching a majority (whichever replica answered first, or both).
    guard = json.loads(docker_exec(primary, "cat", f"{GUARD_DIR}/state.json").stdout)
    assert guard["started"] and re.match(r"reached [23] of 3 members \(majority 2\)", guard["reason"]), guard["reason"]


def test_adding_a_replica_touches_no_other_node(tmp_path):
    """A fourth node listed under pg_replicas is built; the others are only reloaded, never restarted."""
    new = "pgf-4"
    start_lab_container(new, "rehab-molecule-failover")
    try:
        assert wait_booted(new), f"{new} did not boot"
        started = {n: sql(n, "select pg_postmaster_start_time()", db="postgres") for n in NODES}
        # The scenario's host_vars too: its nodes admit this machine as the app (rehab_client_networks).
        write_pg_inventory(tmp_path, "pgf-1", ["pgf-2", "pgf-3", new], host_vars=ROOT / "molecule/failover/host_vars")
        out = run_playbook(
            Path(__file__).resolve().parent.parent / "converge.yml",
            "-e",
            "postgresql_synchronous=true",
            inventory=tmp_path,
        )
        assert out.returncode == 0, out.stdout[-4000:]
        assert in_recovery(new)
        wait_for(
            lambda: (
                sql("pgf-1", "select state from pg_stat_replication where application_name = 'pgf_4'") == "streaming"
            ),
            what=f"{new} to stream",
        )
        assert sql(new, f"select count(*) from acked_writes where id = {STATE['last_id'] + 2}") == "1"
        # The existing nodes were reloaded at most (pg_hba, synchronous list), never restarted or rebuilt.
        assert {n: sql(n, "select pg_postmaster_start_time()", db="postgres") for n in NODES} == started
    finally:
        subprocess.run(["docker", "rm", "-f", new], capture_output=True, check=False)
