"""Where a tiny task's time goes: CPU per task in the client, the controller and the engine, and the
hottest functions of each (py-spy, from the plot/tools venv).

    python bench/profile_hotspots.py [--tasks 3000] [--out bench/results/latest/profile.md]

Two passes on a 1-engine ipcluster: first without a profiler attached, to measure CPU-µs per task per
process (from /proc) for a direct apply_sync loop, a load-balanced apply_sync loop and a load-balanced
apply_async burst; then the burst again under py-spy to name the hot spots.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import envs  # noqa: E402
from common import cpu_seconds, noop  # noqa: E402


def _thread_cpu() -> float:
    return time.process_time()


def measure(label: str, fn, tasks: int, pids: dict[str, int]) -> dict:
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    after = {k: cpu_seconds(p) for k, p in pids.items()}
    per = {k: (after[k] - before[k]) / tasks * 1e6 for k in pids}
    return {"label": label, "wall_us": wall / tasks * 1e6, **{f"{k}_cpu_us": v for k, v in per.items()}}


def top_functions(raw: Path, n: int = 12) -> tuple[int, list[tuple[float, str]], list[tuple[float, str]]]:
    self_t: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        k = int(count)
        total += k
        frames = stack.split(";")
        self_t[frames[-1]] += k
        for f in set(frames):
            if "ipcluster/" in f or "zmq/" in f or "hmac" in f or "pickle" in f or "json" in f:
                incl[f] += k
    pct = lambda c: [(v / total * 100, f) for f, v in c.most_common(n)]  # noqa: E731
    return total, pct(self_t), pct(incl)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=3000)
    ap.add_argument("--out", default=str(BENCH / "results" / "latest" / "profile.md"))
    args = ap.parse_args()
    scratch = tempfile.mkdtemp(prefix="bench-prof-")
    os.environ.setdefault("IPCLUSTER_DIR", str(Path(scratch) / "profiles"))
    import json

    import ipcluster as ipp

    cluster = ipp.Cluster(n=1, profile_dir=str(Path(scratch) / "profile"))
    rc = cluster.start_and_connect_sync()
    try:
        rc.wait_for_engines(1, timeout=60)
        ctl = int(json.loads(cluster.connection_file("client").read_text())["controller_pid"])
        eng = rc[:].apply_sync(os.getpid)[0]
        pids = {"client": os.getpid(), "controller": ctl, "engine": eng}
        e0, lview = rc[rc.ids[0]], rc.load_balanced_view()
        for _ in range(200):
            e0.apply_sync(noop)
            lview.apply_sync(noop)
        n = args.tasks

        def direct_loop():
            for _ in range(n):
                e0.apply_sync(noop)

        def lb_loop():
            for _ in range(n):
                lview.apply_sync(noop)

        def lb_burst():
            ars = [lview.apply_async(noop) for _ in range(n)]
            for ar in ars:
                ar.get()

        rows = [
            measure("direct apply_sync (round trip)", direct_loop, n, pids),
            measure("load-balanced apply_sync (round trip)", lb_loop, n, pids),
            measure("load-balanced apply_async burst (throughput)", lb_burst, n, pids),
        ]
        spy = envs.ensure_venv("plot").parent / "py-spy"
        profiles = {}
        for phase, loop, wall in (
            ("direct apply_sync round trip", direct_loop, rows[0]["wall_us"]),
            ("load-balanced apply_async burst", lb_burst, rows[2]["wall_us"]),
        ):
            raws = {k: Path(scratch) / f"{phase[:6]}-{k}.txt" for k in pids}
            duration = max(3, int(wall * n * 3 / 1e6) + 2)
            procs = [
                subprocess.Popen(
                    [
                        str(spy),
                        "record",
                        "-p",
                        str(pid),
                        "-d",
                        str(duration),
                        "-r",
                        "250",
                        "--format",
                        "raw",
                        "-o",
                        str(raws[k]),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for k, pid in pids.items()
            ]
            time.sleep(1.0)
            deadline = time.perf_counter() + duration - 1.5
            while time.perf_counter() < deadline:
                loop()
            for p in procs:
                p.wait(timeout=duration + 30)
            profiles[phase] = raws
    finally:
        rc.close()
        cluster.stop_cluster_sync()
    lines = [
        "# Where a tiny task's time goes (ipcluster, 1 engine)",
        "",
        f"{args.tasks:,} tasks per row; CPU time per task of each process read from /proc (no profiler attached).",
        "",
        "| loop | wall µs/task | client CPU µs/task | controller CPU µs/task | engine CPU µs/task |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['wall_us']:.0f} | {r['client_cpu_us']:.0f} | {r['controller_cpu_us']:.0f} "
            f"| {r['engine_cpu_us']:.0f} |"
        )
    for phase, raws in profiles.items():
        for k in pids:
            if not raws[k].exists():
                lines += ["", f"## {k}, {phase}: py-spy produced no samples"]
                continue
            total, self_top, incl_top = top_functions(raws[k])
            lines += ["", f"## {k} — {phase}, under py-spy ({total} active samples)", ""]
            lines += ["Self time:", ""] + [f"- {p:.1f}% `{f}`" for p, f in self_top]
            lines += ["", "Inclusive (ipcluster / zmq / hashing / pickling frames):", ""]
            lines += [f"- {p:.1f}% `{f}`" for p, f in incl_top]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
