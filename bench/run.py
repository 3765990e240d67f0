"""Run every workload on every system in the same run, interleaved, and write the report.

    python bench/run.py [--quick] [--systems ipcluster,ipyparallel,dask,baseline]
                        [--workloads startup,roundtrip,throughput,data,footprint,failure,simulate,soak]
                        [--repeat 5] [--out bench/results/<timestamp>] [--plots auto|yes|no]

Repetition k runs each system in turn (rep 1: all systems, rep 2: all systems, ...) so a noisy moment hits
every system alike; each system's share runs in a fresh process under its own interpreter (bench/worker.py).
Writes results.json, results.md (tables with median [min-max], ratios to the baseline, targets), machine.json
and PNG plots into the output folder. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import envs  # noqa: E402
from machine import machine_info  # noqa: E402
from report import write_report  # noqa: E402

ALL_SYSTEMS = ["ipcluster", "ipyparallel", "dask", "baseline"]
ALL_WORKLOADS = ["startup", "roundtrip", "throughput", "data", "footprint", "failure", "simulate", "soak"]
# The session workloads share one cluster per system and repetition, in this order (footprint first: idle).
SESSION_ORDER = ["footprint", "roundtrip", "throughput", "data", "failure"]
# Workloads only our system has (they speak ipcluster's protocol or watch its controller), run once a run.
ONCE = {"simulate", "soak"}

SIZES = {
    "full": {
        "engines": 2,
        "startup_ns": [2, 4, 8],
        "roundtrip_calls": 300,
        "tasks": 5_000,
        "chunksize": 100,
        "data_bytes": 100 * 1024 * 1024,
        "failure_timeout": 60.0,
        "sim_engines": [1000, 5000],
        "sim_procs": 4,
        "sim_hold_s": 10.0,
        "soak_tasks": 1_000_000,
        "soak_batch": 10_000,
        "soak_budget_s": 150.0,
    },
    "quick": {
        "engines": 2,
        "startup_ns": [2],
        "roundtrip_calls": 30,
        "tasks": 200,
        "chunksize": 20,
        "data_bytes": 1024 * 1024,
        "failure_timeout": 15.0,
        "sim_engines": [20],
        "sim_procs": 2,
        "sim_hold_s": 2.5,
        "soak_tasks": 2_000,
        "soak_batch": 500,
        "soak_budget_s": 15.0,
    },
}

# (display name, adapter, options, workloads it runs) per requested system.
VARIANTS = {
    "ipcluster": [
        ("ipcluster", "ipcluster", {}, None),
        ("ipcluster (blake3)", "ipcluster", {"signature_scheme": "blake3"}, {"data"}),
    ],
    "ipyparallel": [("ipyparallel", "ipyparallel", {}, None)],
    "dask": [("dask", "dask", {}, None)],
    "baseline": [("baseline", "baseline", {}, None)],
}


def tasks_for(workloads: list[str], size: dict, rep: int, adapter: str) -> list[dict]:
    tasks = []
    for w in workloads:
        if w in ONCE and (rep > 0 or adapter != "ipcluster"):
            continue
        if w == "startup":
            tasks += [
                {"key": f"startup@{n}", "workload": "startup", "params": {"n": n}} for n in size["startup_ns"]
            ]
        elif w == "roundtrip":
            tasks.append({"key": w, "workload": w, "params": {"calls": size["roundtrip_calls"]}})
        elif w == "throughput":
            tasks.append(
                {"key": w, "workload": w, "params": {"tasks": size["tasks"], "chunksize": size["chunksize"]}}
            )
        elif w == "data":
            tasks.append({"key": w, "workload": w, "params": {"nbytes": size["data_bytes"]}})
        elif w == "footprint":
            tasks.append({"key": w, "workload": w, "params": {}})
        elif w == "failure":
            tasks.append({"key": w, "workload": w, "params": {"timeout": size["failure_timeout"]}})
        elif w == "simulate":
            params = {
                "engines": size["sim_engines"],
                "procs": size["sim_procs"],
                "hold_s": size["sim_hold_s"],
            }
            tasks.append({"key": w, "workload": w, "params": params})
        elif w == "soak":
            params = {k: size[f"soak_{k}"] for k in ("tasks", "batch", "budget_s")}
            tasks.append({"key": w, "workload": w, "params": params})
    order = {w: i for i, w in enumerate(SESSION_ORDER)}
    return sorted(tasks, key=lambda t: order.get(t["workload"], -1))


def run_worker(python: str, spec: dict, log_path: Path, timeout: float) -> dict:
    import subprocess

    env = dict(os.environ)
    env["PYTHONPATH"] = str(BENCH) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env["BENCH_LOGS"] = str(log_path.parent)
    with tempfile.TemporaryDirectory(prefix="bench-w-") as tmp:
        env["IPCLUSTER_DIR"] = str(Path(tmp) / "profiles")
        with open(log_path, "a") as log:
            log.write(f"\n=== {time.strftime('%H:%M:%S')} {json.dumps(spec)}\n")
            log.flush()
            try:
                proc = subprocess.run(
                    [python, str(BENCH / "worker.py"), json.dumps(spec)],
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    env=env,
                    cwd=tmp,
                    timeout=timeout,
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired:
                return {
                    t["key"]: {"ok": False, "error": f"worker timed out after {timeout:.0f}s"}
                    for t in spec["tasks"]
                }
            finally:
                _kill_session_leftovers(tmp)
    for line in proc.stdout.splitlines():
        if line.startswith("BENCHJSON "):
            return json.loads(line[len("BENCHJSON ") :])
    err = f"worker exited {proc.returncode} without results (see {log_path.name})"
    return {t["key"]: {"ok": False, "error": err} for t in spec["tasks"]}


def _kill_session_leftovers(token: str) -> None:
    """Nothing a worker started may outlive it: kill our descendants and daemons carrying its temp dir."""
    from common import descendants, kill_all, pids_with_env

    left = descendants() | pids_with_env(token)
    if left:
        print(f"[bench] killing {len(left)} leftover process(es) of a worker", file=sys.stderr)
    kill_all(left)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 1 repetition (the CI smoke)")
    ap.add_argument("--systems", default=",".join(ALL_SYSTEMS))
    ap.add_argument("--workloads", default=",".join(ALL_WORKLOADS))
    ap.add_argument("--repeat", type=int, default=None, help="repetitions (default 5; 1 with --quick)")
    ap.add_argument("--engines", type=int, default=None, help="engines for the session workloads (default 2)")
    ap.add_argument("--out", default=None, help="results folder (default bench/results/<timestamp>)")
    ap.add_argument("--plots", choices=["auto", "yes", "no"], default="auto")
    ap.add_argument("--worker-timeout", type=float, default=None, help="seconds per worker (1800; 120 quick)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SIZE=VALUE",
        help="override one size, e.g. --set tasks=5000 --set sim_engines=1000,5000 (see SIZES)",
    )
    args = ap.parse_args(argv)

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [s for s in systems if s not in ALL_SYSTEMS] + [w for w in workloads if w not in ALL_WORKLOADS]
    if bad:
        ap.error(
            f"unknown system or workload {', '.join(bad)}; choose from {ALL_SYSTEMS} and {ALL_WORKLOADS}"
        )
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.engines:
        size["engines"] = args.engines
    for item in args.set:
        name, _, value = item.partition("=")
        if name not in size or not value:
            ap.error(f"--set {item}: use NAME=VALUE with NAME one of {', '.join(size)}")
        kind = type(size[name])
        try:
            size[name] = [int(v) for v in value.split(",")] if kind is list else kind(value)
        except ValueError:
            ap.error(f"--set {item}: {value!r} is not a valid {kind.__name__}")
    repeat = args.repeat or (1 if args.quick else 5)
    if repeat < 1:
        ap.error("--repeat must be at least 1")
    out = Path(args.out or BENCH / "results" / datetime.now().strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)

    pythons = {s: envs.python_for(s, log) for s in systems}
    info = machine_info(BENCH.parent)
    info["versions"] = {s: envs.versions(pythons[s], envs.VERSION_MODULES[s]) for s in systems}
    info["sizes"] = size
    info["repeat"] = repeat
    info["mode"] = "quick" if args.quick else "full"
    (out / "machine.json").write_text(json.dumps(info, indent=2) + "\n")

    # results[key][system] = list of per-repetition results (dicts from the worker)
    results: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    t_start = time.perf_counter()
    worker_timeout = args.worker_timeout or (1800.0 if not args.quick else 120.0)
    for rep in range(repeat):
        for system in systems:
            for display, adapter, options, only in VARIANTS[system]:
                wl = [w for w in workloads if only is None or w in only]
                tasks = tasks_for(wl, size, rep, adapter)
                if not tasks:
                    continue
                spec = {"system": adapter, "options": options, "engines": size["engines"], "tasks": tasks}
                t0 = time.perf_counter()
                res = run_worker(pythons[system], spec, out / "logs" / f"{adapter}.log", worker_timeout)
                for key, r in res.items():
                    results[key][display].append(r)
                    if not r.get("ok") and not r.get("unsupported"):
                        log(f"  {display} {key}: FAILED {r.get('error')}")
                log(f"rep {rep + 1}/{repeat} {display}: {', '.join(res)} in {time.perf_counter() - t0:.1f}s")
    elapsed = time.perf_counter() - t_start
    log(f"all repetitions done in {elapsed:.0f}s")
    raw = {"machine": info, "elapsed_s": elapsed, "results": {k: dict(v) for k, v in results.items()}}
    (out / "results.json").write_text(json.dumps(raw, indent=1) + "\n")
    plots = _plots(out, args.plots, args.quick, log)
    md = write_report(out, raw, plots)
    log(f"report: {md}")
    return 0


def _plots(out: Path, mode: str, quick: bool, log) -> list[str]:
    """Render PNGs with matplotlib from the plot venv (made on demand; never a dependency of ipcluster)."""
    import subprocess

    if mode == "no" or (mode == "auto" and quick and not envs.venv_python("plot").exists()):
        return []
    try:
        py = str(envs.ensure_venv("plot", log))
    except Exception as exc:
        log(f"no plots: could not set up matplotlib ({exc})")
        return []
    res = subprocess.run([py, str(BENCH / "plots.py"), str(out)], capture_output=True, text=True, timeout=300)
    if res.returncode:
        log(f"plots failed: {res.stderr.strip()[-500:]}")
        return []
    return [line for line in res.stdout.split() if line.endswith(".png")]


if __name__ == "__main__":
    sys.exit(main())
