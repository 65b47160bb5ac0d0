"""pgBackRest on real PostgreSQL (a primary, a streaming replica) and a repository host over TLS.

The tests run in file order and build on each other: the converge created the stanza and took the
first full backup; archiving reaches the repository and backups come from the standby; the bad
restore requests are refused, naming the value, with nothing changed; rows are written, a time T
recorded, more rows written and the table dropped, and playbooks/restore.yml brings back exactly
the rows before T, on a primary that takes writes again with its replica streaming; then a restore
point made by playbooks/backup.yml is restored to by name. Traffic stays on the scenario's network.
"""

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(ROOT / "tests"))
from rehab_testlib import container_address, docker_exec, run_playbook, tls_path, wait_for  # noqa: E402
from rehab_testlib import psql as sql  # noqa: E402

INVENTORY = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "")).parent
PRIMARY, REPLICA, REPO = "bk-pg1", "bk-pg2", "bk-repo1"
STANZA = "postgresql"  # the cluster's inventory group (postgresql_cluster)
STATE = {}


def pgbackrest(*args, node=REPO, user="pgbackrest"):
    out = docker_exec(node, "runuser", "-u", user, "--", "pgbackrest", f"--stanza={STANZA}", *args, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def tls_verify_result(client, server):
    """openssl's verdict on ``server``'s pgBackRest TLS server, from ``client``, with the lab CA and
    the server's address (the server speaks its binary protocol after the handshake)."""
    address = container_address(server)
    out = docker_exec(
        client, "sh", "-c",
        f"openssl s_client -connect {address}:8432 -CAfile {tls_path('ca')} -verify_return_error -verify_ip {address}"
        " </dev/null 2>/dev/null | grep -a 'Verify return code'",
    )  # fmt: skip
    return {line.strip() for line in out.stdout.splitlines()}  # once per session ticket (TLS 1.3)


def info():
    return json.loads(pgbackrest("--output=json", "info"))[0]


def restore(*extra, **variables):
    """playbooks/restore.yml with ``variables`` as one JSON -e (a time holds a space)."""
    args = [*extra, "-e", json.dumps(variables)] if variables else list(extra)
    return run_playbook(ROOT / "playbooks/restore.yml", *args, inventory=INVENTORY, timeout=900)


def primary_now():
    return sql(PRIMARY, "select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00:00'")


def test_the_stanza_is_encrypted_and_holds_the_first_full_backup():
    stanza = info()
    assert stanza["status"]["code"] == 0, stanza["status"]
    assert stanza["cipher"] == "aes-256-cbc"
    assert [b["type"] for b in stanza["backup"]] == ["full"]
    conf = docker_exec(REPO, "stat", "-c", "%U:%G %a", "/etc/pgbackrest/pgbackrest.conf").stdout.strip()
    assert conf == "root:pgbackrest 640"  # holds the passphrase
    # The nodes never hold it: the repository host encrypts.
    assert "cipher" not in docker_exec(PRIMARY, "cat", "/etc/pgbackrest/pgbackrest.conf").stdout


def test_wal_reaches_the_repository_over_verified_tls():
    pgbackrest("check", node=PRIMARY, user="postgres")  # switches WAL and waits for it in the archive
    assert tls_verify_result(PRIMARY, REPO) == {"Verify return code: 0 (ok)"}
    assert tls_verify_result(REPO, PRIMARY) == {"Verify return code: 0 (ok)"}
    assert sql(PRIMARY, "select failed_count = 0 or last_archived_time > last_failed_time from pg_stat_archiver") == "t"


def test_a_backup_is_taken_from_the_standby_on_demand():
    out = run_playbook(ROOT / "playbooks/backup.yml", "-e", "backup_type=diff", inventory=INVENTORY)
    assert out.returncode == 0, out.stdout[-3000:]
    assert [b["type"] for b in info()["backup"]] == ["full", "diff"]
    log = docker_exec(REPO, "cat", f"/var/log/pgbackrest/{STANZA}-backup.log").stdout
    assert "backup-standby" in log or "standby" in log.split("diff backup")[-1], log[-2000:]


def test_backups_are_scheduled_and_their_age_is_exported():
    timers = docker_exec(REPO, "systemctl", "list-timers", "--all", "--no-pager").stdout
    assert f"pgbackrest-{STANZA}-full.timer" in timers and f"pgbackrest-{STANZA}-diff.timer" in timers
    assert docker_exec(PRIMARY, "systemctl", "start", "pgbackrest-metrics.service").returncode == 0
    metrics = docker_exec(PRIMARY, "cat", "/var/lib/prometheus/node-exporter/pgbackrest.prom").stdout
    assert f'pgbackrest_repository_up{{stanza="{STANZA}"}} 1' in metrics
    assert f'pgbackrest_node_primary{{stanza="{STANZA}"}} 1' in metrics
    newest = [
        line for line in metrics.splitlines() if line.startswith("pgbackrest_backup_last_completed_timestamp_seconds")
    ]
    assert newest and all(time.time() - float(line.split()[-1]) < 3600 for line in newest), metrics


def test_bad_restore_requests_are_refused_naming_the_value_and_nothing_changes():
    sql(PRIMARY, "create table if not exists untouched (id int)")
    cases = [
        ({"restore_target": "time", "restore_value": "2001-01-01 00:00:00+00:00", "restore_overwrite": True},
         "'2001-01-01 00:00:00+00:00' is before the end of the oldest backup"),
        ({"restore_target": "time", "restore_value": "yesterday", "restore_overwrite": True},
         "'yesterday' is not a time"),
        ({"restore_target": "name", "restore_value": "no-such-point", "restore_overwrite": True},
         "restore point 'no-such-point' is not recorded"),
        ({"restore_target": "latest"}, f"{PRIMARY} holds data"),
    ]  # fmt: skip
    for variables, message in cases:
        out = restore(**variables)
        assert out.returncode != 0, out.stdout[-2000:]
        assert message in out.text, out.text[-3000:]
        assert "Restore refused, nothing was changed" in out.text
    # A repository that does not answer.
    assert docker_exec(REPO, "systemctl", "stop", "pgbackrest-server").returncode == 0
    assert docker_exec(REPO, "chmod", "000", "/var/lib/pgbackrest").returncode == 0
    try:
        out = restore(restore_overwrite=True)
    finally:
        docker_exec(REPO, "chmod", "750", "/var/lib/pgbackrest")
        docker_exec(REPO, "systemctl", "start", "pgbackrest-server")
    assert out.returncode != 0
    assert f"did not answer for stanza '{STANZA}'" in out.text, out.text[-3000:]
    # Check mode prints the plan and changes nothing.
    out = restore("--check", restore_overwrite=True)
    assert out.returncode == 0, out.stdout[-3000:]
    assert f"stanza {STANZA}: diff backup" in out.text and "check mode: nothing was changed" in out.text
    assert sql(PRIMARY, "select pg_is_in_recovery()") == "f"
    assert sql(PRIMARY, "select count(*) from pg_tables where tablename = 'untouched'") == "1"


def test_a_dropped_table_comes_back_with_exactly_the_rows_before_t():
    sql(PRIMARY, "create table visits (id int primary key, written timestamptz default clock_timestamp())")
    for i in range(1, 21):
        sql(PRIMARY, f"insert into visits (id) values ({i})")
    time.sleep(1)
    target = primary_now()
    time.sleep(1)
    for i in range(21, 31):
        sql(PRIMARY, f"insert into visits (id) values ({i})")
    sql(PRIMARY, "drop table visits")
    out = restore(restore_target="time", restore_value=target, restore_overwrite=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    STATE["restore_seconds"] = out.seconds
    assert sql(PRIMARY, "select string_agg(id::text, ',' order by id) from visits") == ",".join(map(str, range(1, 21)))
    assert sql(PRIMARY, "select pg_is_in_recovery()") == "f"
    auto = docker_exec(PRIMARY, "cat", "/var/lib/postgresql/15/main/postgresql.auto.conf").stdout
    assert "recovery_target" not in auto  # never applies again when this node runs as a standby


def test_the_restored_primary_takes_writes_and_its_replica_streams_again():
    sql(PRIMARY, "insert into visits (id) values (1000)")
    wait_for(lambda: sql(REPLICA, "select count(*) from visits where id = 1000") == "1", 60, "the row on the replica")
    assert sql(PRIMARY, "select state from pg_stat_replication") == "streaming"
    assert sql(REPLICA, "select pg_is_in_recovery()") == "t"
    sql(PRIMARY, "checkpoint")
    timeline = sql(PRIMARY, "select timeline_id from pg_control_checkpoint()")
    assert int(timeline) > 1  # the restore branched a new timeline
    assert sql(REPLICA, "select received_tli from pg_stat_wal_receiver") == timeline
    print(f"point-in-time restore: {STATE['restore_seconds']:.0f} s")


def test_a_restore_point_from_the_backup_playbook_is_restored_to_by_name():
    backup = ROOT / "playbooks/backup.yml"
    out = run_playbook(backup, "-e", "restore_point=before-bulk-delete", "-e", "backup_type=none", inventory=INVENTORY)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "restore point before-bulk-delete at LSN" in out.text
    again = run_playbook(
        backup, "-e", "restore_point=before-bulk-delete", "-e", "backup_type=none", inventory=INVENTORY
    )
    assert again.returncode != 0 and "already recorded" in again.text
    sql(PRIMARY, "delete from visits where id <= 10")
    out = restore(restore_target="name", restore_value="before-bulk-delete", restore_overwrite=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert sql(PRIMARY, "select count(*) from visits") == "21"  # 1..20 and 1000
    wait_for(lambda: sql(REPLICA, "select count(*) from visits") == "21", 60, "the replica to stream the restored rows")
