#!/usr/bin/env python3
"""Benchmark: assign N beneficiary IDs over an S-shard map (counts only), best of R runs.

    taskset -c 0 .venv/bin/python benchmarks/shard_assign.py --ids 1000000 --shards 64

Prints wall time per run and the peak of Python memory allocated during assignment (tracemalloc,
measured in a separate run so it does not slow the timed ones). Memory should track the shard count,
not the ID range: the same figure for IDs up to 10**6 and up to 10**12.
"""

import argparse
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "collections"))

from ansible_collections.rehab.scale.plugins.module_utils import shard_map as sm


def build_map(shards, width):
    return [
        {"name": f"shard{i + 1}", "min_id": i * width + 1, "max_id": None if i == shards - 1 else (i + 1) * width}
        for i in range(shards)
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-id", type=int, default=10_000_000, help="IDs are drawn from 1..max-id")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    shard_map = sm.load(build_map(args.shards, max(1, args.max_id // args.shards)))
    rng = random.Random(args.seed)
    ids = [rng.randint(1, args.max_id) for _ in range(args.ids)]

    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        result = sm.assign(shard_map, ids, mapping="never")
        times.append(time.perf_counter() - start)
    assert sum(result["counts"].values()) == args.ids

    tracemalloc.start()
    sm.assign(shard_map, ids, mapping="never")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"ids={args.ids} shards={args.shards} max_id={args.max_id} runs={args.runs}")
    print(f"best={min(times):.3f}s median={sorted(times)[len(times) // 2]:.3f}s worst={max(times):.3f}s")
    print(f"peak_alloc_during_assign={peak / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
