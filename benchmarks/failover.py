#!/usr/bin/env python3
"""Benchmark: failover time and acknowledged-row loss over repeated kill -> failover -> return -> rejoin.

    .venv/bin/molecule converge -s failover        # 1 primary + 2 synchronous replicas (pgf-1..3)
    .venv/bin/python benchmarks/failover.py --runs 5
    .venv/bin/molecule destroy -s failover

    make lab                                        # the 9-container Phase 2 lab (lab-pg1..4, asynchronous)
    .venv/bin/python benchmarks/failover.py --runs 5 --nodes lab-pg1,lab-pg2,lab-pg3,lab-pg4 --host-vars none

Each cycle: a writer that connects like the app (every node listed, libpq picks the one accepting
writes) commits numbered rows and records every acknowledged one; replication lag on the primary is
sampled under that load; the primary's container is killed (SIGKILL); playbooks/failover.yml runs
with -e confirm_dead=<it> (its host is gone, so it cannot be fenced); the time from playbook start to
the first write accepted on the new primary is measured by a second writer that retries from the
moment the playbook starts; acknowledged rows missing on the new primary are counted; the old
primary's container is started again and, for --watch seconds, every half second a write is tried
on it alone (its start guard must keep it from accepting any); then playbooks/rejoin.yml brings it
back as a replica. Traffic goes only to the lab's own containers.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from rehab_testlib import LAB_DB_PASSWORD as PASSWORD  # noqa: E402
from rehab_testlib import AckedWriter as Writer  # noqa: E402
from rehab_testlib import container_address as address  # noqa: E402
from rehab_testlib import psql as sql  # noqa: E402
from rehab_testlib import run_playbook, try_write, wait_booted, write_pg_inventory  # noqa: E402

NODES = ["pgf-1", "pgf-2", "pgf-3"]
SETTINGS = {"host_vars": ROOT / "molecule/failover/host_vars"}  # --host-vars


def running(node):
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", node], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() == "true"


def primary_now():
    primaries = [n for n in NODES if running(n) and sql(n, "select pg_is_in_recovery()") == "f"]
    if len(primaries) != 1:
        sys.exit(f"expected exactly one primary, found {primaries}")
    return primaries[0]


def inventory(primary, directory):
    """An inventory whose groups match the cluster as it is now (as on-call would update it)."""
    replicas = [n for n in NODES if n != primary]
    return write_pg_inventory(directory, primary, replicas, host_vars=SETTINGS["host_vars"])


def playbook(inv, name, *extra):
    return run_playbook(ROOT / "playbooks" / name, *extra, inventory=inv)


def first_write_after(start, hosts, first_id, deadline):
    """Seconds from start until any host accepts a write (polled every 50 ms)."""
    while time.monotonic() < deadline:
        for host in hosts:
            try:
                conn = psycopg2.connect(
                    host=host,
                    dbname="rehab",
                    user="rehab",
                    password=PASSWORD,
                    connect_timeout=1,
                    target_session_attrs="read-write",
                    sslmode="require",  # the lab's PostgreSQL admits TCP clients over TLS only
                )
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO acked_writes (id) VALUES (%s)", (first_id,))
                conn.close()
                return time.monotonic() - start
            except psycopg2.Error:
                continue
        time.sleep(0.05)
    return None


def cycle(run, next_id, workdir, watch, profile=False):
    primary = primary_now()
    inv = inventory(primary, workdir)
    sql(primary, "create table if not exists acked_writes (id bigint primary key, at timestamptz default now())")
    sql(primary, "alter table acked_writes owner to rehab")
    # IDs above every earlier run's (of this or an earlier invocation), so none collides.
    next_id = max(next_id, int(sql(primary, "select coalesce(max(id), 0) from acked_writes")) + 1)
    writer = Writer(",".join(address(n) for n in NODES if running(n)), next_id)
    writer.start()
    time.sleep(3)
    lag = [
        int(x or 0)
        for x in sql(
            primary,
            "select coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)),0) from pg_stat_replication",
        ).split()
    ]
    lag_s = sql(primary, "select coalesce(max(extract(epoch from replay_lag)), 0) from pg_stat_replication")
    survivors = [address(n) for n in NODES if n != primary]
    subprocess.run(["docker", "kill", "--signal", "KILL", primary], check=True, capture_output=True)
    writer.join(timeout=30)
    acked = writer.acked
    start = time.monotonic()
    probe = {}
    prober = threading.Thread(
        target=lambda: probe.update(
            seconds=first_write_after(start, survivors, writer.next_id + 1_000_000, start + 300)
        ),
        daemon=True,
    )
    prober.start()
    out = playbook(inv, "failover.yml", "-e", f"confirm_dead={primary}")
    playbook_seconds = time.monotonic() - start
    prober.join(timeout=300)
    if out.returncode != 0:
        sys.exit(f"run {run}: failover.yml failed:\n{out.stdout[-3000:]}")
    if profile:  # where the playbook's time went (ansible.posix.profile_tasks), slowest first
        print(out.stdout[out.stdout.rfind("TASKS RECAP") :], flush=True)
    new_primary = primary_now()
    missing = sql(
        new_primary,
        f"select count(*) from unnest(array{acked}::bigint[]) a(id) "
        "where not exists (select 1 from acked_writes w where w.id = a.id)",
    )
    subprocess.run(["docker", "start", primary], check=True, capture_output=True)
    returned = time.monotonic()
    if not wait_booted(primary):
        sys.exit(f"run {run}: {primary} did not boot")
    old, tries, accepted = address(primary), 0, 0
    while time.monotonic() - returned < watch:
        tries += 1
        accepted += try_write(old, writer.next_id + 3_000_000 + tries)
        time.sleep(0.5)
    rejoin = playbook(inventory(new_primary, workdir), "rejoin.yml", "-e", f"rejoin_host={primary}")
    if rejoin.returncode != 0:
        sys.exit(f"run {run}: rejoin.yml failed:\n{rejoin.stdout[-3000:]}")
    result = {
        "run": run,
        "killed": primary,
        "promoted": new_primary,
        "acked": len(acked),
        "lost": int(missing),
        "first_write_s": probe.get("seconds"),
        "playbook_s": playbook_seconds,
        "lag_bytes": max(lag),
        "lag_s": float(lag_s),
        "old_primary_writes_accepted": accepted,
        "old_primary_write_tries": tries,
    }
    print(result, flush=True)
    return result, writer.next_id + 4_000_000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", default=",".join(NODES), help="the cluster's containers, comma-separated")
    parser.add_argument("--host-vars", default=str(SETTINGS["host_vars"]), help="host_vars directory, or none")
    parser.add_argument("--watch", type=float, default=60, help="seconds to try writes on the returned old primary")
    parser.add_argument("--profile", action="store_true", help="print each failover run's task profile")
    args = parser.parse_args()
    NODES[:] = args.nodes.split(",")
    SETTINGS["host_vars"] = None if args.host_vars == "none" else Path(args.host_vars)
    results, next_id = [], 10_000_000
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(1, args.runs + 1):
            result, next_id = cycle(run, next_id, Path(tmp), args.watch, args.profile)
            results.append(result)
    times = [r["first_write_s"] for r in results]
    walls = [r["playbook_s"] for r in results]
    lost, acked = sum(r["lost"] for r in results), sum(r["acked"] for r in results)
    accepted = sum(r["old_primary_writes_accepted"] for r in results)
    tries = sum(r["old_primary_write_tries"] for r in results)
    print(
        f"runs={len(results)} first write on new primary: median={statistics.median(times):.1f}s "
        f"worst={max(times):.1f}s; playbook wall: median={statistics.median(walls):.1f}s worst={max(walls):.1f}s; "
        f"acknowledged rows lost: {lost} of {acked}; lag under load before the kill: max "
        f"{max(r['lag_bytes'] for r in results)} bytes, {max(r['lag_s'] for r in results):.3f} s; "
        f"writes accepted by a returned old primary before rejoin: {accepted} of {tries} tries"
    )


if __name__ == "__main__":
    main()
