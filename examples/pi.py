"""Estimate pi by Monte-Carlo on a running cluster, and show which engine did how much.

Run a cluster first (`ipcluster start -n 4 --daemonize`), then: python examples/pi.py [--profile NAME]
"""

from __future__ import annotations

import argparse
import collections
import time

import ipcluster as ipp


def count_hits(samples: int, seed: int) -> int:
    """Points of the unit square that fall inside the quarter circle."""
    import random

    rng = random.Random(seed)
    hits = 0
    for _ in range(samples):
        x, y = rng.random(), rng.random()
        if x * x + y * y <= 1.0:
            hits += 1
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--samples", type=int, default=200_000, help="samples per task")
    args = parser.parse_args()

    rc = ipp.Client(profile=args.profile)
    try:
        view = rc.load_balanced_view()
        start = time.perf_counter()
        result = view.map_async(count_hits, [args.samples] * args.tasks, range(args.tasks))
        hits = sum(result.get(timeout=600))
        elapsed = time.perf_counter() - start
        total = args.samples * args.tasks
        per_engine = collections.Counter(md["engine_id"] for md in result.metadata)
        print(
            f"pi ~= {4.0 * hits / total:.6f} from {total:,} samples on {len(rc.ids)} engines in {elapsed:.2f} s"
        )
        for engine_id in sorted(per_engine):
            share = per_engine[engine_id] / args.tasks
            print(f"  engine {engine_id}: {per_engine[engine_id]:3d} tasks ({share:5.1%})")
    finally:
        rc.close()


if __name__ == "__main__":
    main()
