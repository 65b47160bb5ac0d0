#!/usr/bin/env python3
"""Benchmarks of the sharded rehab-agi (issue 14) on this machine's loopback: the guide's three
shards, each its own PostgreSQL and Redis server (Debian's packages: scripts/host-servers.sh), the
coordinator built by rehab.scale.pg_shard_coordinator, two sharded app processes and one unsharded
one (tests/rehab_shardlab.py; `make release` first).

    .venv/bin/python benchmarks/shards.py [--requests 2000] [--creates 100000] [--rows 1000000]

routing    the same beneficiary read (a cache hit) and the same create, one client, through a sharded
           app and through an unsharded one whose database and Redis are shard1's: median and p99
           per request, and the ratio (what routing by shard costs a request).
placement  --creates new beneficiaries through both sharded apps at once (8 clients): rows per shard,
           fill ratios (rows over capacity, all 100,000 here) and the spread between the fullest
           and the emptiest.
listing    the shards filled to --rows beneficiaries in all (shard1 and shard2 hold their 100,000
           each, shard3 the rest), then pages of 100 through the coordinator (the first, one in the
           middle, the last) and a count, 20 times each: median and p95.

Traffic goes only to loopback.
"""

import argparse
import concurrent.futures
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from rehab_shardlab import OPEN_CAPACITY, AppProcess, ShardLab, call


def timed(base, path, body=None, runs=1):
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        status, answer = call(base, path, body)
        seconds.append(time.perf_counter() - started)
        if status not in (200, 201):
            raise SystemExit(f"{path}: {status} {answer}")
    return seconds, answer


def summary(seconds):
    ordered = sorted(seconds)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def routing(lab, args):
    shard1 = lab.servers["shard1"]
    plain = AppProcess(
        lab.directory,
        None,
        "unsharded",
        env={
            "REHAB_AGI_DB_WRITE_DSN": shard1.dsn("rehab", "rehab"),
            "REHAB_AGI_REDIS_NODES": f"127.0.0.1:{lab.redises[0].port}",
            "REHAB_AGI_REDIS_CLUSTER": "false",
        },
    )
    try:
        _, created = timed(lab.apps[0].base, "/api/agi/beneficiaries", {"name": "routing"})
        path = f"/api/agi/beneficiaries/{created['id']}"
        rows = []
        for what, run in (
            ("read (cache hit)", lambda base: timed(base, path, runs=args.requests)[0]),
            ("create", lambda base: timed(base, "/api/agi/beneficiaries", {"name": "r"}, runs=args.requests // 4)[0]),
        ):
            run(plain.base), run(lab.apps[0].base)  # warm-up: connections, cache
            measured = {}
            for _ in range(2):  # interleaved, so both see the same machine
                for name, base in (("unsharded", plain.base), ("sharded", lab.apps[0].base)):
                    measured.setdefault(name, []).extend(run(base))
            rows.append((what, summary(measured["unsharded"]), summary(measured["sharded"])))
    finally:
        plain.stop()
    print("| request | unsharded median / p99 | sharded median / p99 | ratio of medians |")
    print("| --- | --- | --- | --- |")
    for what, (um, up), (sm, sp) in rows:
        print(f"| {what} | {um:.2f} / {up:.2f} ms | {sm:.2f} / {sp:.2f} ms | {sm / um:.2f}x |")


def placement(lab, args):
    before = {name: int(s.sql("SELECT count(*) FROM beneficiaries", "rehab")) for name, s in lab.servers.items()}
    bases = [app.base for app in lab.apps]

    def create(n):
        return call(bases[n % len(bases)], "/api/agi/beneficiaries", {"name": f"placed {n}"})[0]

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(create, range(args.creates), chunksize=64))
    seconds = time.perf_counter() - started
    failed = sum(status != 201 for status in statuses)
    rows = {name: int(s.sql("SELECT count(*) FROM beneficiaries", "rehab")) for name, s in lab.servers.items()}
    added = {name: rows[name] - before[name] for name in rows}
    fills = {name: rows[name] / OPEN_CAPACITY for name in rows}  # every capacity is 100,000 here
    print(f"{args.creates} creates through {len(bases)} app processes in {seconds:.0f} s, {failed} failed")
    print("| shard | rows added | rows | fill ratio |")
    print("| --- | --- | --- | --- |")
    for name, held in rows.items():
        print(f"| {name} | {added[name]:,} | {held:,} | {fills[name]:.4f} |")
    spread = max(fills.values()) - min(fills.values())
    print(f"spread of fill ratios: {spread:.4f} ({spread * OPEN_CAPACITY:.0f} rows of 100,000)")


def listing(lab, args):
    servers = lab.servers
    counts = {name: int(s.sql("SELECT count(*) FROM beneficiaries", "rehab")) for name, s in servers.items()}
    targets = {"shard1": 100_000, "shard2": 100_000}
    targets["shard3"] = args.rows - sum(targets.values())
    started = time.perf_counter()
    for name, server in servers.items():
        missing = targets[name] - counts[name]
        if missing > 0:
            server.sql(
                f"INSERT INTO beneficiaries (name, program) SELECT 'bulk ' || n, 'gait'"
                f" FROM generate_series(1, {missing}) n; ANALYZE beneficiaries",
                "rehab",
            )
    total = sum(int(s.sql("SELECT count(*) FROM beneficiaries", "rehab")) for s in servers.values())
    print(f"{total:,} beneficiaries over 3 shards (loaded in {time.perf_counter() - started:.0f} s)")
    median_id = "SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY id) FROM beneficiaries"
    middle = int(servers["shard3"].sql(median_id, "rehab"))
    last = int(servers["shard3"].sql("SELECT max(id) - 50 FROM beneficiaries", "rehab"))
    base = lab.apps[0].base
    print("| request (through the coordinator) | median | p95 | items |")
    print("| --- | --- | --- | --- |")
    for what, path in (
        ("first page, limit 100", "/api/agi/beneficiaries?limit=100"),
        ("page after shard1's last ID (crosses to shard2)", "/api/agi/beneficiaries?after=99950&limit=100"),
        (f"page in the middle of shard3 (after {middle})", f"/api/agi/beneficiaries?after={middle}&limit=100"),
        ("last page", f"/api/agi/beneficiaries?after={last}&limit=100"),
        ("count of every beneficiary", "/api/agi/beneficiaries/count"),
    ):
        timed(base, path)  # warm-up
        seconds, answer = timed(base, path, runs=20)
        ordered = sorted(seconds)
        items = len(answer["items"]) if "items" in answer else answer["count"]
        print(f"| {what} | {statistics.median(ordered) * 1000:.1f} ms | {ordered[18] * 1000:.1f} ms | {items:,} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--creates", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rehab-shards-bench-") as directory, ShardLab(directory) as lab:
        for step in (routing, placement, listing):
            print(f"\n## {step.__name__}")
            step(lab, args)


if __name__ == "__main__":
    main()
