"""Turn results.json into results.md: per-workload tables (median [min-max], ratio to the baseline of the
same run), the targets with pass/fail and the gap, and the scale and soak figures."""

from __future__ import annotations

import json
from pathlib import Path

from common import summarize

# workload -> [(metric, label, unit, higher_is_better, baseline metric for the ratio)]
METRICS = {
    "startup": [
        ("start_s", "start → N engines ready", "s", False, "start_s"),
        ("stop_s", "stop → no process left", "s", False, None),
    ],
    "roundtrip": [
        ("direct_us", "direct (DirectView / pinned submit)", "µs", False, "raw_us"),
        ("lb_us", "load-balanced (LoadBalancedView / submit)", "µs", False, "raw_us"),
    ],
    "throughput": [
        ("apply_async_tps", "apply_async loop (submit loop)", "tasks/s", True, "map_tps"),
        ("map_tps", "map, chunksize=1", "tasks/s", True, "map_tps"),
        ("map_chunked_tps", "map, chunksize=C", "tasks/s", True, "map_tps"),
    ],
    "data": [
        ("push_MBps", "push to one engine", "MB/s", True, "push_MBps"),
        ("pull_MBps", "pull from one engine", "MB/s", True, "pull_MBps"),
        ("scatter_MBps", "scatter across engines", "MB/s", True, "push_MBps"),
        ("gather_MBps", "gather across engines", "MB/s", True, "pull_MBps"),
        ("push_tcp_MBps", "push through the sockets (shared memory off)", "MB/s", True, "push_MBps"),
        ("pull_tcp_MBps", "pull through the sockets (shared memory off)", "MB/s", True, "pull_MBps"),
        ("push_hmac_MBps", "raw zmq + keyed hmac-sha256 both ends", "MB/s", True, "push_MBps"),
        ("push_blake3_MBps", "raw zmq + keyed blake3 both ends", "MB/s", True, "push_MBps"),
    ],
    "footprint": [
        ("controller_rss_mb", "controller RSS", "MiB", False, None),
        ("engine_rss_mb", "idle engine RSS", "MiB", False, None),
        ("nanny_rss_mb", "dask nanny RSS (per worker)", "MiB", False, None),
    ],
    "failure": [("detect_s", "kill -9 engine → client knows", "s", False, None)],
}
WORKLOAD_TITLES = {
    "startup": "1. Cluster start-up and stop",
    "roundtrip": "2. Round trip of a trivial function",
    "throughput": "3. Throughput of tiny tasks",
    "data": "4. Data movement",
    "footprint": "6. Footprint",
    "failure": "5. Failure detection (each system's defaults)",
}
DEFAULTS_NOTE = {
    "ipcluster": "heartbeat 1000 ms x 3 misses",
    "ipyparallel": "heartbeat 3000 ms x 10 misses",
    "dask": "worker-scheduler TCP stream close (nanny restarts the worker)",
}


def stats(results: dict, key: str, system: str, metric: str) -> dict:
    runs = results.get(key, {}).get(system, [])
    return summarize(
        r["metrics"].get(metric) for r in runs if r.get("ok") and r["metrics"].get(metric) is not None
    )


def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s


def cell(st: dict) -> str:
    if not st:
        return "n/a"
    return f"**{fmt(st['median'])}** [{fmt(st['min'])}–{fmt(st['max'])}]"


def errors_for(results: dict, key: str, system: str) -> list[str]:
    return [r["error"] for r in results.get(key, {}).get(system, []) if not r.get("ok") and r.get("error")]


def workload_table(results: dict, key: str, workload: str, systems: list[str]) -> list[str]:
    lines = ["| system | figure | median [min–max] | unit | ratio to baseline |", "|---|---|---|---|---|"]
    base = "baseline"
    for system in systems:
        for metric, label, unit, _higher, base_metric in METRICS[workload]:
            st = stats(results, key, system, metric)
            if not st:
                continue
            ratio = "—"
            if base_metric and system != base:
                bst = stats(results, key, base, base_metric)
                if bst and bst["median"]:
                    ratio = f"{st['median'] / bst['median']:.2f}×"
            lines.append(f"| {system} | {label} | {cell(st)} | {unit} | {ratio} |")
        timeouts = [
            r["metrics"]["detect_timeout_s"]
            for r in results.get(key, {}).get(system, [])
            if r.get("ok") and r["metrics"].get("detect_timeout_s")
        ]
        if timeouts:
            lines.append(
                f"| {system} | not detected in {len(timeouts)} run(s) | > {fmt(max(timeouts))} | s | |"
            )
        for err in sorted(set(errors_for(results, key, system)))[:2]:
            lines.append(f"| {system} | **failed** | {err[:150]} | | |")
    return lines


def target_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(target, measured, verdict, gap) for each goal of the issue."""
    rows = []

    def med(key, system, metric):
        st = stats(results, key, system, metric)
        return st.get("median") if st else None

    def check(name, value, limit, ok_if_le, unit="×"):
        if value is None or limit is None:
            rows.append((name, "n/a", "not measured", ""))
            return
        ok = value <= limit if ok_if_le else value >= limit
        gap = "" if ok else f"{(value / limit if ok_if_le else limit / value):.2f}× off"
        rows.append((name, f"{value:.2f}{unit}", "met" if ok else "**missed**", gap))

    raw = med("roundtrip", "baseline", "raw_us")
    d, lb = med("roundtrip", "ipcluster", "direct_us"), med("roundtrip", "ipcluster", "lb_us")
    check("round trip, direct ≤ 4× raw zmq", d / raw if d and raw else None, 4, True)
    check("round trip, load-balanced ≤ 5× raw zmq", lb / raw if lb and raw else None, 5, True)
    for metric, label in (("map_tps", "map"), ("apply_async_tps", "apply_async loop")):
        ours = med("throughput", "ipcluster", metric)
        ipp = med("throughput", "ipyparallel", metric)
        dask = med("throughput", "dask", metric)
        check(f"tiny tasks ({label}) ≥ 5× ipyparallel", ours / ipp if ours and ipp else None, 5, False)
        check(f"tiny tasks ({label}) ≥ dask", ours / dask if ours and dask else None, 1, False)
    ppe = med("throughput", "baseline", "map_tps")
    ours = med("throughput", "ipcluster", "map_tps")
    check(
        "tiny tasks (map) ≥ 40% of ProcessPoolExecutor(2).map(chunksize=1)",
        ours / ppe if ours and ppe else None,
        0.4,
        False,
    )
    raw_push = med("data", "baseline", "push_MBps")
    dask_push = med("data", "dask", "push_MBps")
    for system, scheme in (("ipcluster", "hmac-sha256"), ("ipcluster (blake3)", "blake3")):
        push = med("data", system, "push_MBps")
        check(
            f"100 MB push ({scheme}) ≥ 70% of raw zmq",
            push / raw_push if push and raw_push else None,
            0.7,
            False,
        )
        check(
            f"100 MB push ({scheme}) ≥ dask scatter",
            push / dask_push if push and dask_push else None,
            1,
            False,
        )
    ours4, dask4 = med("startup@4", "ipcluster", "start_s"), med("startup@4", "dask", "start_s")
    check("start-up to 4 engines ≤ dask LocalCluster", ours4 / dask4 if ours4 and dask4 else None, 1, True)
    sim = _single(results, "simulate")
    if sim:
        big = max(sim["runs"], key=lambda r: r["engines"])
        ok = (
            big["registered"] == big["engines"]
            and big["false_positives"] == 0
            and big["alive_at_end"] == big["engines"]
        )
        rows.append(
            (
                f"{big['engines']} simulated engines registered and kept alive, no false positives",
                f"{big['registered']} registered, {big.get('purged', 0)} purged, "
                f"{big['false_positives']} false positives, {big['alive_at_end']} alive",
                "met" if ok else "**missed**",
                "",
            )
        )
    else:
        rows.append(("5,000 simulated engines kept alive", "n/a", "not measured", ""))
    soak = _single(results, "soak")
    if soak:
        growth = soak.get("growth", {})
        ok = soak.get("flat") and not soak.get("error")
        rows.append(
            (
                f"memory flat over {soak['tasks_done']:,} tasks",
                f"controller +{growth.get('controller_mb', 0):.1f} MiB, client +{growth.get('client_mb', 0):.1f} MiB "
                f"over the 2nd half"
                + (f"; stopped early: {soak['error'][:120]}" if soak.get("error") else ""),
                "met" if ok else "**missed**",
                "",
            )
        )
    else:
        rows.append(("memory flat over 1M tasks", "n/a", "not measured", ""))
    return rows


def _single(results: dict, key: str) -> dict | None:
    runs = results.get(key, {}).get("ipcluster", [])
    for r in runs:
        if r.get("ok"):
            return r["metrics"]
    return None


def simulate_lines(results: dict) -> list[str]:
    sim = _single(results, "simulate")
    errs = errors_for(results, "simulate", "ipcluster")
    if not sim:
        return [f"Not measured: {errs[0][:300] if errs else 'workload not run'}"]
    lines = [
        f"One real controller (heartbeat {sim['hb_period_ms']} ms x {sim['hb_misses']} misses); "
        f"{sim['procs']} load-generator processes, each impersonating hundreds of engines "
        f"(registration + heartbeats only); held for {sim['hold_s']:.0f} s after the last registration.",
        "",
        "| engines | registered | purged before first beat | time to last registration | false positives "
        "(unregistered while beating) | alive at end | controller CPU per heartbeat period | controller RSS "
        "| TCP listen overflows |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sim["runs"]:
        lines.append(
            f"| {r['engines']:,} | {r['registered']:,} | {r.get('purged', 0)} | {fmt(r['register_s'])} s "
            f"| {r['false_positives']} "
            f"| {r['alive_at_end']:,} | {fmt(r['cpu_per_period_ms'])} ms ({fmt(r['cpu_pct'])}% of a core) "
            f"| {fmt(r['controller_rss_mb'])} MiB | {r.get('listen_overflows', 'n/a')} |"
        )
    return lines


def soak_lines(results: dict) -> list[str]:
    soak = _single(results, "soak")
    errs = errors_for(results, "soak", "ipcluster")
    if not soak:
        return [f"Not measured: {errs[0][:300] if errs else 'workload not run'}"]
    s = soak["samples"]
    pick = [s[0], s[len(s) // 4], s[len(s) // 2], s[3 * len(s) // 4], s[-1]] if len(s) >= 5 else s
    lines = [
        f"{soak['tasks_done']:,} of {soak['tasks_requested']:,} requested tasks in {fmt(soak['elapsed_s'])} s "
        f"({fmt(soak['tps'])} tasks/s) through a LoadBalancedView on 2 real engines, submitted in batches of "
        f"{soak['batch']:,} (apply_async loop, results fetched, references dropped)."
        + (
            " **Reduced** to fit the run's time budget."
            if soak["tasks_done"] < soak["tasks_requested"]
            else ""
        ),
        "",
        *([f"**The run stopped early: {soak['error']}**", ""] if soak.get("error") else []),
        "| point | tasks done | controller RSS (MiB) | client RSS (MiB) |",
        "|---|---|---|---|",
        f"| before | 0 | {fmt(soak['before']['controller_mb'])} | {fmt(soak['before']['client_mb'])} |",
    ]
    for p in pick:
        lines.append(f"| during | {p['done']:,} | {fmt(p['controller_mb'])} | {fmt(p['client_mb'])} |")
    lines.append(
        f"| after (idle) | {soak['tasks_done']:,} | {fmt(soak['after']['controller_mb'])} | {fmt(soak['after']['client_mb'])} |"
    )
    return lines


def write_report(out: Path, raw: dict, plots: list[str]) -> Path:
    results = raw["results"]
    info = raw["machine"]
    order = ["ipcluster", "ipcluster (blake3)", "ipyparallel", "dask", "baseline"]
    present = {s for v in results.values() for s in v}
    systems = [s for s in order if s in present]
    size = info["sizes"]
    L = [
        f"# Benchmark results ({info['mode']} run)",
        "",
        f"{info['date']} — {info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB, {info['os']}, "
        f"Python {info['python']}, ipcluster {info['ipcluster_git']}. {info['repeat']} repetition(s), interleaved "
        f"system by system; total {raw['elapsed_s']:.0f} s. Full details: `machine.json`; raw figures: `results.json`.",
        "",
        "Versions: "
        + "; ".join(
            f"{s}: " + ", ".join(f"{k} {v}" for k, v in vers.items()) for s, vers in info["versions"].items()
        ),
        "",
        "Each cell is the **median** [min–max] over the repetitions. The ratio is this figure's median over "
        "the baseline's median from the same run (times: lower is better; rates: higher is better).",
        "",
        "## Targets",
        "",
        "| target | measured | verdict | gap |",
        "|---|---|---|---|",
    ]
    for row in target_rows(results):
        L.append("| " + " | ".join(row) + " |")
    for workload in ["startup", "roundtrip", "throughput", "data", "failure", "footprint"]:
        keys = sorted(
            (k for k in results if k.split("@")[0] == workload),
            key=lambda k: int(k.split("@")[1]) if "@" in k else 0,
        )
        if not keys:
            continue
        L += ["", f"## {WORKLOAD_TITLES[workload]}", ""]
        if workload == "throughput":
            L.append(
                f"{size['tasks']:,} tasks on {size['engines']} engines; C = {size['chunksize']}. Baseline: ProcessPoolExecutor({size['engines']}).map."
            )
        if workload == "data":
            L.append(
                f"{size['data_bytes'] / 2**20:.0f} MiB float64 array; baseline: one raw zmq message to another process and its ack. MB = MiB."
            )
        if workload == "failure":
            L.append("Defaults: " + "; ".join(f"{k}: {v}" for k, v in DEFAULTS_NOTE.items()) + ".")
        if workload == "roundtrip":
            L.append("Baseline: raw pyzmq DEALER↔ROUTER ping-pong of a 4-byte frame between two processes.")
        for key in keys:
            if "@" in key:
                L += ["", f"N = {key.split('@')[1]} engines", ""]
            L += [""] + workload_table(results, key, workload, systems)
    L += ["", "## 7a. Scale by simulation", ""] + simulate_lines(results)
    L += ["", "## 7b. Memory over many tasks", ""] + soak_lines(results)
    if plots:
        L += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    notes = out / "notes.md"
    if notes.exists():
        L += ["", notes.read_text().strip()]
    md = out / "results.md"
    md.write_text("\n".join(L) + "\n")
    return md


if __name__ == "__main__":
    import sys

    folder = Path(sys.argv[1])
    raw = json.loads((folder / "results.json").read_text())
    plots = sorted(p.name for p in folder.glob("*.png"))
    print(write_report(folder, raw, plots))
