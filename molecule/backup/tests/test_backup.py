"""pgBackRest on real PostgreSQL (a primary, a streaming replica) and a repository host over TLS.

The tests run in file order and build on each other: the converge created the stanza and took the
first full backup; archiving reaches the repository and backups come from the standby; the bad
restore requests are refused, naming the value, with nothing changed; rows are written, a time T
recorded, more rows written and the table dropped, and playbooks/restore.yml brings back exactly
the rows before T, on a primary that takes writes again with its replica streaming; then a restore
point made by playbooks/backup.yml is restored to by name. The same flow runs against the S3
repository (moto behind nginx on bk-s3). Last, the repository host is killed (the container, not the
service) while the primary takes writes and switches WAL: no write fails, WAL waits in the queue,
the host boots again, archiving catches up, `pgbackrest verify` passes and a restore to a point
inside the outage brings back exactly the rows before it; past the queue bound WAL is dropped and
a full backup restores coverage. Last, both PostgreSQL hosts are lost (their containers removed)
and fresh ones take their names: restore.yml installs what they need, restores the latest state and
the ordinary converge runs on top. Traffic stays on the scenario's network.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3

ROOT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(ROOT / "tests"))
from rehab_testlib import (  # noqa: E402
    container_address,
    container_network,
    docker_exec,
    lab_secret,
    run_playbook,
    start_lab_container,
    tls_path,
    wait_booted,
    wait_for,
)
from rehab_testlib import psql as sql  # noqa: E402

INVENTORY = Path(os.environ.get("MOLECULE_INVENTORY_FILE", "")).parent
PRIMARY, REPLICA, REPO, OBJECT_STORE = "bk-pg1", "bk-pg2", "bk-repo1", "bk-s3"
BUCKET = "rehab-lab-backups"  # pgbackrest_s3_bucket in the lab's group_vars
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


def info(repo=1):
    return json.loads(pgbackrest(f"--repo={repo}", "--output=json", "info"))[0]


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
    # The nodes never hold it: the repository host encrypts. They hold the S3 repository's own (they
    # push WAL there themselves), readable by postgres alone.
    node_conf = docker_exec(PRIMARY, "cat", "/etc/pgbackrest/pgbackrest.conf").stdout
    assert "repo1-cipher" not in node_conf and "repo2-cipher-pass=" in node_conf
    assert docker_exec(PRIMARY, "stat", "-c", "%U:%G %a", "/etc/pgbackrest/pgbackrest.conf").stdout.strip() == (
        "root:postgres 640"
    )


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
    for repo in (1, 2):  # the repository host's and S3, each on its own
        assert f'pgbackrest_repository_up{{stanza="{STANZA}",repo="{repo}"}} 1' in metrics, metrics
        full = f'pgbackrest_backup_last_completed_timestamp_seconds{{stanza="{STANZA}",type="full",repo="{repo}"}}'
        assert full in metrics, metrics
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


def test_the_s3_bucket_is_versioned_encrypted_and_closed_to_the_public(tmp_path):
    """Read back from the store itself (boto3 on the control node, trusting the hosts' CA)."""
    ca = tmp_path / "ca.pem"
    ca.write_text(docker_exec(REPO, "cat", tls_path("ca")).stdout)
    s3 = boto3.client(
        "s3",
        endpoint_url=f"https://{container_address(OBJECT_STORE)}",
        region_name="us-east-1",
        aws_access_key_id=lab_secret("vault_pgbackrest_s3_key"),
        aws_secret_access_key=lab_secret("vault_pgbackrest_s3_key_secret"),
        verify=str(ca),
    )
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert all(s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"].values())
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="pgbackrest/")["Contents"]]
    assert any(k.startswith(f"pgbackrest/archive/{STANZA}/") for k in keys)  # the nodes push WAL there
    assert any(k.startswith(f"pgbackrest/backup/{STANZA}/") for k in keys)
    stanza = info(repo=2)
    assert stanza["status"]["code"] == 0 and stanza["cipher"] == "aes-256-cbc"
    timers = docker_exec(REPO, "systemctl", "list-timers", "--all", "--no-pager").stdout
    assert f"pgbackrest-{STANZA}-s3-full.timer" in timers


def test_a_dropped_table_comes_back_from_the_s3_repository():
    out = run_playbook(ROOT / "playbooks/backup.yml", "-e", "backup_repo=2", inventory=INVENTORY)
    assert out.returncode == 0, out.stdout[-3000:]
    assert [b["type"] for b in info(repo=2)["backup"]][-1] == "full"
    sql(PRIMARY, "create table s3_visits (id int primary key)")
    sql(PRIMARY, "insert into s3_visits select generate_series(1, 15)")
    time.sleep(1)
    target = primary_now()
    time.sleep(1)
    sql(PRIMARY, "insert into s3_visits select generate_series(16, 25)")
    sql(PRIMARY, "drop table s3_visits")
    out = restore(restore_target="time", restore_value=target, restore_overwrite=True, restore_repo=2)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "from repository 2" in out.text
    log = docker_exec(PRIMARY, "cat", f"/var/log/pgbackrest/{STANZA}-restore.log").stdout
    assert "repo2: restore backup set" in log.split("restore command begin")[-1], log[-2000:]
    rows = sql(PRIMARY, "select string_agg(id::text, ',' order by id) from s3_visits")
    assert rows == ",".join(map(str, range(1, 16)))
    sql(PRIMARY, "insert into s3_visits values (100)")
    wait_for(lambda: sql(REPLICA, "select count(*) from s3_visits") == "16", 60, "the replica to stream again")
    # Unknown repository: refused, naming it.
    out = restore(restore_overwrite=True, restore_repo=3)
    assert out.returncode != 0 and "pgbackrest_repo must be one of: 1, 2, got: 3" in out.text, out.text[-2000:]


def test_killing_the_repository_host_stops_no_write_and_leaves_no_gap():
    address = container_address(REPO)
    sql(PRIMARY, "create table during_outage (id int primary key, filler text)")
    archived_before = int(sql(PRIMARY, "select archived_count from pg_stat_archiver"))
    failed_before = int(sql(PRIMARY, "select failed_count from pg_stat_archiver"))
    subprocess.run(["docker", "kill", "--signal", "KILL", REPO], check=True, capture_output=True)
    acknowledged, target, started = [], None, time.monotonic()
    for i in range(1, 41):  # each write commits on the primary and its synchronous replica
        sql(PRIMARY, f"insert into during_outage values ({i}, repeat('x', 100000))")
        acknowledged.append(i)
        if i % 10 == 0:
            sql(PRIMARY, "select pg_switch_wal()")  # a full segment for the queue
        if i == 20:
            time.sleep(1)
            target = primary_now()
            time.sleep(1)
    wait_for(
        lambda: int(sql(PRIMARY, "select failed_count from pg_stat_archiver")) > failed_before,
        90, "archiving to fail while the repository host is down",
    )  # fmt: skip
    assert acknowledged == list(range(1, 41))
    outage = time.monotonic() - started
    # The queue keeps the segments (under archive-push-queue-max): none was reported archived and dropped.
    dropped = docker_exec(PRIMARY, "grep", "-c", "dropped", f"/var/log/pgbackrest/{STANZA}-archive-push-async.log")
    assert dropped.stdout.strip() in ("", "0"), dropped.stdout

    subprocess.run(["docker", "start", REPO], check=True, capture_output=True)
    assert wait_booted(REPO, 120), f"{REPO} did not boot"
    assert container_address(REPO) == address  # the nodes' configuration names it
    wait_for(
        lambda: docker_exec(PRIMARY, "runuser", "-u", "postgres", "--", "pgbackrest", f"--stanza={STANZA}", "check",
                            timeout=120).returncode == 0,
        180, "archiving to catch up",
    )  # fmt: skip
    assert int(sql(PRIMARY, "select archived_count from pg_stat_archiver")) > archived_before + 3
    verify = docker_exec(REPO, "runuser", "-u", "pgbackrest", "--", "pgbackrest", f"--stanza={STANZA}", "--repo=1",
                         "verify", timeout=300)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "ERROR" not in verify.stdout + verify.stderr and "invalid" not in verify.stdout, verify.stdout

    out = restore(restore_target="time", restore_value=target, restore_overwrite=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert sql(PRIMARY, "select string_agg(id::text, ',' order by id) from during_outage") == ",".join(
        map(str, range(1, 21))
    )
    print(f"repository host down {outage:.0f} s: {len(acknowledged)} writes acknowledged, none failed")


def metric(node, name):
    """A sample of this stanza's node-exporter textfile metric ``name`` on ``node``, refreshed now.

    Started twice: a start while the timer's own run is under way only waits for that run, which may
    have read the state before the moment the caller means (seen in CI: a drop read as never). Each
    start clears systemd's start counter first: callers poll, and five starts within ten seconds
    hit the unit's start limit ("start of the service was attempted too often", seen in CI)."""
    for _ in range(2):
        docker_exec(node, "systemctl", "reset-failed", "pgbackrest-metrics.service")
        assert docker_exec(node, "systemctl", "start", "pgbackrest-metrics.service", timeout=300).returncode == 0
    metrics = docker_exec(node, "cat", "/var/lib/prometheus/node-exporter/pgbackrest.prom").stdout
    found = [line for line in metrics.splitlines() if line.startswith(f'{name}{{stanza="{STANZA}"')]
    return max((float(line.split()[-1]) for line in found), default=None)


def test_past_the_queue_bound_wal_is_dropped_and_a_full_backup_restores_coverage():
    """A bound of 32 MB for this test (the lab's is 1 GiB): six segments queued while the repository
    host is down exceed it, pgBackRest drops them (reported archived) rather than fill pg_wal, the
    drop is exported (the PgBackRestWalDropped alert holds while no full backup is newer), and the
    next full backup clears it."""
    conf = "/etc/pgbackrest/pgbackrest.conf"
    assert docker_exec(PRIMARY, "cp", "-p", conf, "/root/pgbackrest.conf.saved").returncode == 0
    docker_exec(PRIMARY, "sed", "-i", "s/^archive-push-queue-max=.*/archive-push-queue-max=32MB/", conf)
    log = f"/var/log/pgbackrest/{STANZA}-archive-push-async.log"
    dropped_before = docker_exec(PRIMARY, "grep", "-c", "dropped", log).stdout.strip() or "0"
    sql(PRIMARY, "create table past_bound (id int primary key, filler text)")
    subprocess.run(["docker", "kill", "--signal", "KILL", REPO], check=True, capture_output=True)
    try:
        for i in range(1, 7):
            sql(PRIMARY, f"insert into past_bound values ({i}, repeat('y', 100000))")
            sql(PRIMARY, "select pg_switch_wal()")
        wait_for(
            lambda: (docker_exec(PRIMARY, "grep", "-c", "dropped", log).stdout.strip() or "0") != dropped_before,
            180, "pgBackRest to drop the queue past its bound",
        )  # fmt: skip
        # pg_wal does not keep them: the archiver, told each dropped segment is archived, marks it
        # done (one archive_command call each; on a busy machine that takes a few seconds).
        wait_for(
            lambda: int(docker_exec(PRIMARY, "sh", "-c", "ls /var/lib/postgresql/15/main/pg_wal/archive_status"
                                    " | grep -c ready").stdout.strip() or 0) <= 2,
            60, "pg_wal to let the dropped segments go",
        )  # fmt: skip
    finally:
        docker_exec(PRIMARY, "cp", "-p", "/root/pgbackrest.conf.saved", conf)
        subprocess.run(["docker", "start", REPO], check=True, capture_output=True)
    assert wait_booted(REPO, 120), f"{REPO} did not boot"
    assert sql(PRIMARY, "select count(*) from past_bound") == "6"  # no write failed
    wait_for(lambda: docker_exec(REPO, "systemctl", "is-active", "pgbackrest-server").stdout.strip() == "active", 60)
    dropped_at = metric(PRIMARY, "pgbackrest_archive_last_dropped_timestamp_seconds")
    assert metric(PRIMARY, "pgbackrest_archive_dropped_total") > 0
    # The alert's condition, on the real metrics: the drop is newer than every full backup...
    drops = docker_exec(PRIMARY, "grep", "dropped", log).stdout[-2000:]  # shown if the next assertion fails
    assert dropped_at > metric(PRIMARY, "pgbackrest_backup_last_completed_timestamp_seconds"), drops
    out = run_playbook(ROOT / "playbooks/backup.yml", "-e", "backup_type=full", inventory=INVENTORY, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:]
    pgbackrest("check", node=PRIMARY, user="postgres")
    newest = info()["backup"][-1]
    assert newest["type"] == "full" and not newest["error"]
    # ... until this full backup (repository 1; the S3 one takes its own: backup.yml -e backup_repo=2).
    assert newest["timestamp"]["stop"] > dropped_at


def replace_with_a_fresh_host(node):
    """``node`` is lost for good and a fresh machine takes its name and address: a new container from
    the lab image, made as molecule.yml makes them, with nothing installed on it."""
    start_lab_container(node, container_network(node), container_address(node))
    assert wait_booted(node, 120), f"the fresh {node} did not boot"


def test_a_cluster_whose_hosts_are_lost_is_restored_onto_fresh_hosts():
    """Both PostgreSQL hosts are lost (containers removed) after their last WAL was archived; fresh
    hosts take their names and addresses. restore.yml, with the inventory as the on-call left it and
    no overwrite flag (fresh hosts hold nothing), installs PostgreSQL and pgBackRest there, restores
    the newest state and rebuilds the replica; the ordinary converge then runs clean on top."""
    sql(PRIMARY, "create table survivors (id int primary key)")
    sql(PRIMARY, "insert into survivors select generate_series(1, 30)")
    segment = sql(PRIMARY, "select pg_walfile_name(pg_switch_wal())")
    wait_for(
        lambda: sql(PRIMARY, "select coalesce(last_archived_wal, '') from pg_stat_archiver") >= segment,
        120, f"{segment} in the archive",
    )  # fmt: skip
    for node in (PRIMARY, REPLICA):
        replace_with_a_fresh_host(node)
    assert docker_exec(PRIMARY, "test", "-e", "/usr/lib/postgresql").returncode != 0  # really fresh
    out = restore(restore_target="latest")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert sql(PRIMARY, "select count(*) from survivors") == "30"
    assert sql(PRIMARY, "select pg_is_in_recovery()") == "f"
    sql(PRIMARY, "insert into survivors values (31)")
    wait_for(lambda: sql(REPLICA, "select count(*) from survivors") == "31", 60, "the new row on the rebuilt replica")
    assert sql(PRIMARY, "select state from pg_stat_replication") == "streaming"
    converge = run_playbook(ROOT / "molecule/backup/converge.yml", inventory=INVENTORY, timeout=900)
    assert converge.returncode == 0, converge.stdout[-4000:]
    pgbackrest("check", node=PRIMARY, user="postgres")
    assert sql(PRIMARY, "select count(*) from survivors") == "31"
    print(f"restore onto two fresh hosts: {out.seconds:.0f} s; converge after it: {converge.seconds:.0f} s")
