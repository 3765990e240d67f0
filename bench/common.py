"""Measurement helpers shared by the harness and by every system adapter.

Stdlib only (numpy optional), because this module is imported by the worker script inside the peers'
virtual environments as well as in ours.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

MB = 1024 * 1024


def noop() -> None:
    """The trivial function of the round-trip and throughput workloads."""
    return None


def ident(x: int) -> int:
    """The trivial mapped function of the throughput workloads."""
    return x


def summarize(values: Iterable[float]) -> dict[str, float]:
    """Median, min and max of one figure's repetitions."""
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return {}
    return {"median": statistics.median(vals), "min": vals[0], "max": vals[-1], "n": len(vals)}


def wait_for(pred: Callable[[], bool], timeout: float, interval: float = 0.002) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` seconds pass; True when it became true."""
    deadline = time.perf_counter() + timeout
    while True:
        if pred():
            return True
        if time.perf_counter() > deadline:
            return False
        time.sleep(interval)


# -- processes ------------------------------------------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, state) for every live process (from /proc)."""
    table: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        table[int(entry.name)] = (int(fields[1]), fields[0])
    return table


def descendants(root: int | None = None) -> set[int]:
    """Live (non-zombie) descendants of ``root`` (default: this process).

    multiprocessing's resource tracker is left out: it lives as long as its parent, not as the cluster.
    """
    root = os.getpid() if root is None else root
    table = _proc_table()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        nxt = {pid for pid, (ppid, state) in table.items() if ppid in frontier and pid not in found}
        found |= nxt
        frontier = nxt
    return {pid for pid in found if table[pid][1] != "Z" and "resource_tracker" not in cmdline(pid)}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def pids_matching(token: str) -> set[int]:
    """Live processes whose command line contains ``token`` (e.g. a unique profile dir)."""
    found = set()
    table = _proc_table()
    for pid, (_ppid, state) in table.items():
        if state != "Z" and pid != os.getpid() and token in cmdline(pid):
            found.add(pid)
    return found


def pids_with_env(token: str) -> set[int]:
    """Live processes whose environment contains ``token`` (the unique IPCLUSTER_DIR of one worker).

    Catches daemonized processes that left our process tree.
    """
    found = set()
    for pid, (_ppid, state) in _proc_table().items():
        if state == "Z" or pid == os.getpid():
            continue
        try:
            if token.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pids: Iterable[int], timeout: float = 30.0) -> bool:
    """Wait until none of ``pids`` is alive (reaping our own children as they exit)."""
    pids = set(pids)

    def gone() -> bool:
        for pid in list(pids):
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        return not any(alive(p) for p in pids)

    return wait_for(gone, timeout, 0.005)


def kill_all(pids: Iterable[int]) -> None:
    """SIGKILL whatever is left of a run (only pids this benchmark started)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def rss_mb(pid: int) -> float | None:
    """Resident set size of one process in MiB (VmRSS)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used so far by one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_call_us(fn: Callable[[], object], calls: int, warmup: int = 20) -> float:
    """Median latency of ``fn()`` in microseconds over ``calls`` calls, after a warm-up."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def timed_median(fn: Callable[[], object], times: int = 3, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``times`` calls after ``warmup`` untimed ones (cold buffers, page faults)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def make_array(nbytes: int):
    """A float64 array of ``nbytes`` bytes with non-trivial content."""
    import numpy as np

    return np.random.default_rng(0).random(nbytes // 8)
