#!/usr/bin/env python3
"""Benchmark: pgBackRest with 1,000,000 beneficiaries: backup and restore times, archive lag, PITR precision.

    .venv/bin/molecule converge -s backup     # bk-pg1 primary, bk-pg2 replica, bk-repo1 repository, bk-s3
    .venv/bin/python benchmarks/backup.py
    .venv/bin/molecule destroy -s backup

Steps, each timed on the scenario's real containers:
1. 1,000,000 rows into `beneficiaries` (the app's own schema, its first migration in app/rehab_agi/migrations).
2. A full backup into the repository host (repo 1) and one into S3 (repo 2), from the standby, as the
   timers run them (`pgbackrest --type=full --repo=N backup` as the repository's user).
3. 5 % of the rows changed, then a differential backup.
4. Archive lag (the recovery point objective) under a steady write load, light then heavy: every
   second the primary's WAL position is recorded with pg_stat_archiver's last archived segment; the
   lag at a sample is how long ago the oldest WAL not yet in the archive was written (0 when the
   archive holds everything written).
5. Point-in-time restore through playbooks/restore.yml to a time T taken from a probe row written
   during a stream of one-row transactions (one every 5 ms): its wall time, and which rows around T
   came back (the precision).
Traffic goes only to the scenario's own containers.
"""

import argparse
import glob
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "collections"))
from rehab_testlib import docker_exec, run_playbook  # noqa: E402
from rehab_testlib import psql as sql  # noqa: E402

from ansible_collections.rehab.scale.plugins.module_utils.pg_failover import lsn_to_int as lsn  # noqa: E402

WAL_SEGMENT = 16 * 1024 * 1024


def app_schema():
    """The app's own CREATE TABLE: its first migration, which the service also applies when it starts."""
    return (ROOT / "app/rehab_agi/migrations/0001_expand_beneficiaries.sql").read_text()


def segment_end(wal_name):
    """The LSN just past WAL segment ``wal_name`` (TTTTTTTTXXXXXXXXYYYYYYYY, 16 MiB segments)."""
    log, seg = int(wal_name[8:16], 16), int(wal_name[16:24], 16)
    return (log << 32) + (seg + 1) * WAL_SEGMENT


def long_sql(node, query, timeout=3600):
    """SQL that may run longer than the test library's one-minute psql."""
    out = docker_exec(node, "runuser", "-u", "postgres", "--", "psql", "-d", "rehab", "-Atc", query, timeout=timeout)
    if out.returncode != 0:
        sys.exit(f"{node}: {query[:80]}: {out.stderr}")
    return out.stdout.strip()


def timed(what, fn):
    start = time.monotonic()
    result = fn()
    seconds = time.monotonic() - start
    print(f"{what}: {seconds:.1f} s", flush=True)
    return seconds, result


def pgbackrest(args, node, stanza, user="pgbackrest", timeout=3600):
    """pgBackRest on ``node`` as ``user`` (the repository's user on the repository host, postgres on a node)."""
    out = docker_exec(node, "runuser", "-u", user, "--", "pgbackrest", f"--stanza={stanza}", *args, timeout=timeout)
    if out.returncode != 0:
        sys.exit(f"pgbackrest {' '.join(args)} failed: {out.stdout}{out.stderr}")
    return out.stdout


def load(primary, rows):
    for leftover in ("archive_load", "pitr_probe"):  # an earlier run's, restored with the rest
        sql(primary, f"drop table if exists {leftover}")
    sql(primary, app_schema())
    sql(primary, "truncate beneficiaries restart identity")
    long_sql(
        primary,
        "insert into beneficiaries (name, program, created_at)"
        " select 'Beneficiary ' || g, (array['physio','speech','occupational'])[1 + g % 3],"
        f" now() - make_interval(secs => g) from generate_series(1, {rows}) g",
    )
    long_sql(primary, "vacuum analyze beneficiaries")


def writer(primary, seconds, rows_per_txn, pause_ms, payload):
    """One-row (or rows_per_txn-row) transactions for ``seconds``, inside the primary (a DO block commits)."""
    body = (
        f"do $$ declare stop timestamptz := clock_timestamp() + interval '{seconds} seconds'; begin"
        " while clock_timestamp() < stop loop"
        f" insert into archive_load (filler) select repeat('x', {payload}) from generate_series(1, {rows_per_txn});"
        f" commit; perform pg_sleep({pause_ms / 1000}); end loop; end $$"
    )
    long_sql(primary, body)


def archive_lag(primary, stanza, seconds, load):
    """Samples of (archive lag in s, unarchived bytes) under a write load (rows per transaction, pause
    in ms between transactions, bytes per row), one a second."""
    rows_per_txn, pause_ms, payload = load
    sql(primary, "create table if not exists archive_load (id bigserial primary key, filler text)")
    load_thread = threading.Thread(target=writer, args=(primary, seconds, rows_per_txn, pause_ms, payload))
    history, samples = [], []
    # Everything so far archived first (pgbackrest check switches WAL and waits for it), so the
    # archive's end is a segment boundary the samples move forward from.
    pgbackrest(["check"], primary, stanza, user="postgres", timeout=300)
    safe = segment_end(sql(primary, "select last_archived_wal from pg_stat_archiver"))
    start_lsn = lsn(sql(primary, "select pg_current_wal_lsn()"))
    load_thread.start()
    started = time.monotonic()
    while load_thread.is_alive():
        now = time.monotonic()
        current, archived = sql(
            primary, "select pg_current_wal_lsn(), coalesce(last_archived_wal, '') from pg_stat_archiver"
        ).split("|")
        history.append((now, lsn(current)))
        if len(archived) == 24:  # a segment (not a .history or .partial file): the archive's end moved
            safe = max(safe, segment_end(archived))
        pending = [t for t, position in history if position > safe]
        if now - started > 5:  # after the load has started
            samples.append((now - min(pending) if pending else 0.0, max(0, lsn(current) - safe)))
        time.sleep(1)
    load_thread.join()
    written = lsn(sql(primary, "select pg_current_wal_lsn()")) - start_lsn
    return samples, written / seconds


def probe_stream(primary, seconds):
    sql(primary, "drop table if exists pitr_probe")
    sql(primary, "create table pitr_probe (id int primary key, written timestamptz)")
    long_sql(
        primary,
        f"do $$ declare i int := 0; stop timestamptz := clock_timestamp() + interval '{seconds} seconds'; begin"
        " while clock_timestamp() < stop loop i := i + 1;"
        " insert into pitr_probe values (i, clock_timestamp()); commit; perform pg_sleep(0.005); end loop; end $$",
    )
    rows = sql(primary, "select id, extract(epoch from written) from pitr_probe order by id").split()
    return [(int(i), float(t)) for i, t in (line.split("|") for line in rows)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--primary", default="bk-pg1")
    parser.add_argument("--repo-host", default="bk-repo1")
    parser.add_argument("--stanza", default="postgresql")
    parser.add_argument("--lag-seconds", type=int, default=90)
    parser.add_argument("--inventory", help="default: the backup scenario's Molecule inventory")
    args = parser.parse_args()
    inventory = args.inventory or max(
        glob.glob(os.path.expanduser("~/.ansible/tmp/molecule.*.backup/inventory")), key=os.path.getmtime
    )
    results = {}
    p, repo, stanza = args.primary, args.repo_host, args.stanza

    results["load_s"], _ = timed(f"load {args.rows:,} beneficiaries", lambda: load(p, args.rows))
    results["database_mb"] = int(sql(p, "select pg_database_size('rehab')")) / 2**20
    print(f"database rehab: {results['database_mb']:.0f} MiB", flush=True)
    sql(p, "checkpoint")
    for repo_key in (1, 2):
        results[f"full_repo{repo_key}_s"], _ = timed(
            f"full backup into repo {repo_key}",
            lambda key=repo_key: pgbackrest(["--type=full", f"--repo={key}", "backup"], repo, stanza),
        )
    long_sql(p, f"update beneficiaries set program = 'changed' where id % 20 = 0 and id <= {args.rows}")
    sql(p, "checkpoint")
    results["diff_repo1_s"], _ = timed(
        "differential backup into repo 1 (5 % of rows changed)",
        lambda: pgbackrest(["--type=diff", "--repo=1", "backup"], repo, stanza),
    )
    info = json.loads(pgbackrest(["--output=json", "info"], repo, stanza))[0]
    results["backups"] = [
        {"label": b["label"], "repo": b["database"]["repo-key"], "size_mb": b["info"]["repository"]["delta"] / 2**20}
        for b in info["backup"][-3:]
    ]
    for b in results["backups"]:
        print(f"  {b['label']} (repo {b['repo']}): {b['size_mb']:.1f} MiB stored", flush=True)

    timeout = sql(p, "show archive_timeout")
    for name, rows_per_txn, pause_ms, payload in (("light", 1, 100, 200), ("heavy", 20, 5, 1000)):
        samples, rate = archive_lag(p, stanza, args.lag_seconds, (rows_per_txn, pause_ms, payload))
        lags = sorted(s[0] for s in samples)
        results[f"lag_{name}"] = {
            "wal_bytes_per_s": rate,
            "median_s": statistics.median(lags),
            "p95_s": lags[int(0.95 * (len(lags) - 1))],
            "max_s": lags[-1],
            "max_unarchived_mb": max(s[1] for s in samples) / 2**20,
        }
        r = results[f"lag_{name}"]
        print(
            f"archive lag, {name} load ({rate / 1024:.0f} KiB/s of WAL, archive_timeout {timeout}): median"
            f" {r['median_s']:.1f} s, p95 {r['p95_s']:.1f} s, max {r['max_s']:.1f} s,"
            f" at most {r['max_unarchived_mb']:.1f} MiB unarchived",
            flush=True,
        )

    probes = probe_stream(p, 10)
    middle = probes[len(probes) // 2]
    target_epoch = middle[1]
    target = sql(p, f"select to_char(to_timestamp({target_epoch}) at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")
    variables = {"restore_target": "time", "restore_value": f"{target}+00:00", "restore_overwrite": True}
    out = run_playbook(
        ROOT / "playbooks/restore.yml", "-e", json.dumps(variables), inventory=Path(inventory).parent, timeout=3600
    )
    if out.returncode != 0:
        sys.exit(out.stdout[-3000:])
    results["pitr_s"] = out.seconds
    print(f"point-in-time restore (restore.yml, primary and replica): {out.seconds:.1f} s", flush=True)
    kept = int(sql(p, "select coalesce(max(id), 0) from pitr_probe"))
    rows_now = int(sql(p, "select count(*) from beneficiaries"))
    by_id = dict(probes)
    last_kept = by_id.get(kept)
    first_lost = by_id.get(kept + 1)
    results["pitr_precision"] = {
        "target": target,
        "probe_rows": len(probes),
        "row_at_target": middle[0],
        "last_kept": kept,
        "last_kept_before_t_ms": (target_epoch - last_kept) * 1000 if last_kept else None,
        "first_lost_after_t_ms": (first_lost - target_epoch) * 1000 if first_lost else None,
        "beneficiaries_after_restore": rows_now,
    }
    r = results["pitr_precision"]
    print(
        f"precision: T = probe row {middle[0]}'s write time; rows kept up to {kept}"
        f" (written {r['last_kept_before_t_ms']:.2f} ms before T), first row lost written"
        f" {r['first_lost_after_t_ms']:.2f} ms after T; {rows_now:,} beneficiaries after the restore",
        flush=True,
    )
    print(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
