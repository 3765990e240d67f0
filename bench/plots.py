"""PNG plots from results.json (run by bench/run.py under the plot venv, which has matplotlib).

python bench/plots.py <results folder>      # prints the names of the PNGs it wrote
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from common import summarize  # noqa: E402

ORDER = ["ipcluster", "ipcluster (blake3)", "ipyparallel", "dask", "baseline"]
COLORS = {
    "ipcluster": "#1f77b4",
    "ipcluster (blake3)": "#17becf",
    "ipyparallel": "#ff7f0e",
    "dask": "#2ca02c",
    "baseline": "#7f7f7f",
}


def stat(results, key, system, metric):
    runs = results.get(key, {}).get(system, [])
    return summarize(
        r["metrics"].get(metric) for r in runs if r.get("ok") and r["metrics"].get(metric) is not None
    )


def bars(results, key, metrics, ylabel, title, fname, out, log=False):
    systems = [s for s in ORDER if s in results.get(key, {})]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    width = 0.8 / max(len(systems), 1)
    drew = False
    for i, system in enumerate(systems):
        xs, ys, lo, hi = [], [], [], []
        for j, (metric, _label) in enumerate(metrics):
            st = stat(results, key, system, metric)
            if st:
                xs.append(j + i * width)
                ys.append(st["median"])
                lo.append(st["median"] - st["min"])
                hi.append(st["max"] - st["median"])
        if xs:
            drew = True
            ax.bar(xs, ys, width, yerr=[lo, hi], label=system, color=COLORS.get(system), capsize=2)
    if not drew:
        plt.close(fig)
        return None
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(metrics))])
    ax.set_xticklabels([label for _m, label in metrics], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / fname, dpi=80)
    plt.close(fig)
    return fname


def startup_curve(results, out):
    keys = sorted((k for k in results if k.startswith("startup@")), key=lambda k: int(k.split("@")[1]))
    if not keys:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for system in ORDER:
        pts = [(int(k.split("@")[1]), stat(results, k, system, "start_s")) for k in keys]
        pts = [(n, st) for n, st in pts if st]
        if not pts:
            continue
        ns = [n for n, _ in pts]
        med = [st["median"] for _, st in pts]
        err = [[st["median"] - st["min"] for _, st in pts], [st["max"] - st["median"] for _, st in pts]]
        ax.errorbar(ns, med, yerr=err, marker="o", label=system, color=COLORS.get(system), capsize=2)
    ax.set_xlabel("engines (N)")
    ax.set_ylabel("seconds from start to N ready")
    ax.set_title("Start-up scaling (median, min-max)", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "startup.png", dpi=80)
    plt.close(fig)
    return "startup.png"


def soak_curve(results, out):
    runs = [r for r in results.get("soak", {}).get("ipcluster", []) if r.get("ok")]
    if not runs:
        return None
    m = runs[0]["metrics"]
    s = m["samples"]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot([p["done"] for p in s], [p["controller_mb"] for p in s], label="controller RSS")
    ax.plot([p["done"] for p in s], [p["client_mb"] for p in s], label="client RSS")
    ax.set_xlabel("tiny tasks completed")
    ax.set_ylabel("MiB")
    ax.set_title(f"Memory over {m['tasks_done']:,} tasks (LoadBalancedView, 2 engines)", fontsize=10)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "soak_memory.png", dpi=80)
    plt.close(fig)
    return "soak_memory.png"


def main() -> None:
    out = Path(sys.argv[1])
    results = json.loads((out / "results.json").read_text())["results"]
    made = [
        bars(
            results,
            "roundtrip",
            [("direct_us", "direct"), ("lb_us", "load-balanced")],
            "µs per call (log)",
            "Round trip of a trivial function (median, min-max)",
            "roundtrip.png",
            out,
            log=True,
        ),
        bars(
            results,
            "throughput",
            [
                ("apply_async_tps", "apply_async loop"),
                ("map_tps", "map chunksize=1"),
                ("map_chunked_tps", "map chunksize=C"),
            ],
            "tasks/s (log)",
            "Tiny-task throughput",
            "throughput.png",
            out,
            log=True,
        ),
        bars(
            results,
            "data",
            [
                ("push_MBps", "push"),
                ("pull_MBps", "pull"),
                ("scatter_MBps", "scatter"),
                ("gather_MBps", "gather"),
            ],
            "MiB/s",
            "Moving a large numpy array",
            "data.png",
            out,
        ),
        bars(
            results,
            "footprint",
            [("controller_rss_mb", "controller"), ("engine_rss_mb", "idle engine")],
            "RSS MiB",
            "Footprint",
            "footprint.png",
            out,
        ),
        startup_curve(results, out),
        soak_curve(results, out),
    ]
    for name in made:
        if name:
            print(name)


if __name__ == "__main__":
    main()
