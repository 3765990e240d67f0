"""Scale workloads only our system runs: thousands of simulated engines, and a long stream of tiny tasks.

``simulate``: one real controller (``python -m ipcluster.controller``, defaults) against
``bench/fake_engines.py`` processes; measures registration time, false failures (unregistrations of
engines that kept beating) and the controller's CPU per heartbeat period.
``soak``: as many tiny tasks as fit the budget through a LoadBalancedView on 2 real engines, sampling the
controller's and the client's RSS, to show whether memory stays flat.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq
from common import cpu_seconds, kill_all, noop, rss_mb, wait_for, wait_gone

BENCH = Path(__file__).resolve().parent.parent
FAKE = BENCH / "fake_engines.py"


def _raise_fd_limit(want: int = 65536) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class _Watcher:
    """Client-side view of the controller: notifications (SUB) and connection_request (query DEALER)."""

    def __init__(self, client_file: Path) -> None:
        from ipcluster.wire import Session

        info = json.loads(client_file.read_text())
        self.session = Session(
            key=info.get("key", ""), signature_scheme=info.get("signature_scheme", "hmac-sha256")
        )
        self.ctx = zmq.Context()
        host = info.get("interface") or "127.0.0.1"
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.sub.setsockopt(zmq.RCVHWM, 0)
        self.sub.connect(f"tcp://{host}:{info['notification']}")
        self.query = self.ctx.socket(zmq.DEALER)
        self.query.setsockopt(zmq.IDENTITY, self.session.bsession)
        self.query.connect(f"tcp://{host}:{info['registration']}")
        self.registered = 0
        self.unregistered = 0
        self.last_registration = 0.0

    def drain(self) -> None:
        while True:
            try:
                frames = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                i = frames.index(b"<IPC|MSG>")
                msg = self.session.deserialize(frames[i + 1 :])
            except Exception:
                continue
            if msg["msg_type"] == "registration_notification":
                self.registered += 1
                self.last_registration = time.perf_counter()
            elif msg["msg_type"] == "unregistration_notification":
                self.unregistered += 1

    def engine_count(self, timeout: float = 10.0) -> int | None:
        self.session.send(self.query, "connection_request", {})
        if not self.query.poll(timeout * 1000):
            return None
        _idents, msg = self.session.recv(self.query)
        return len(msg["content"].get("engines", {})) if msg else None

    def close(self) -> None:
        self.sub.close(0)
        self.query.close(0)
        self.ctx.term()


def _start_controller(profile_dir: str) -> tuple[subprocess.Popen, Path, Path]:
    from ipcluster.profiles.dirs import ProfileDir

    log = open(Path(profile_dir) / "controller.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ipcluster.controller", "--profile-dir", profile_dir],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    pd = ProfileDir(profile_dir)
    cfile, efile = pd.connection_file("client"), pd.connection_file("engine")
    if not wait_for(lambda: cfile.exists() and efile.exists() or proc.poll() is not None, 60, 0.05):
        raise RuntimeError("controller wrote no connection files in 60 s")
    if proc.poll() is not None:
        raise RuntimeError(
            f"controller exited {proc.returncode}: {(Path(profile_dir) / 'controller.log').read_text()[-500:]}"
        )
    time.sleep(0.2)  # the files are written atomically, but the sockets may still be binding on slow boxes
    return proc, cfile, efile


def _simulate_one(engines: int, procs: int, hold_s: float) -> dict:
    tmp = tempfile.mkdtemp(prefix="bench-sim-")
    ctl, cfile, efile = _start_controller(tmp)
    fakes: list[subprocess.Popen] = []
    watcher = _Watcher(cfile)
    try:
        info = json.loads(efile.read_text())
        period = info.get("hb_period", 1000) / 1000
        per = [engines // procs + (1 if i < engines % procs else 0) for i in range(procs)]
        for count in per:
            fakes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(FAKE),
                        "--file",
                        str(efile),
                        "--count",
                        str(count),
                        "--max-seconds",
                        "900",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for f in fakes:
            if f.stdout.readline().strip() != "ready":
                raise RuntimeError("a fake-engine process failed to start")
        time.sleep(0.3)
        t0 = time.perf_counter()
        for f in fakes:
            f.stdin.write("go\n")
            f.stdin.flush()
        net0 = _listen_drops()
        _wait_registrations(watcher, engines, limit=max(30.0, engines / 50), stall=20.0)
        register_s = watcher.last_registration - t0 if watcher.registered else None
        net1 = _listen_drops()
        replies_ok = _registration_replies(fakes, 10.0)
        watcher.drain()
        unreg_before_hold = watcher.unregistered
        cpu0, w0 = cpu_seconds(ctl.pid), time.perf_counter()
        time.sleep(hold_s)
        cpu1, w1 = cpu_seconds(ctl.pid), time.perf_counter()
        watcher.drain()
        alive = watcher.engine_count()
        periods = (w1 - w0) / period
        purged = (Path(tmp) / "controller.log").read_text().count("purged")
        return {
            "engines": engines,
            "registered": watcher.registered,
            "listen_overflows": net1[0] - net0[0],
            "listen_drops": net1[1] - net0[1],
            "purged": purged,
            "registration_replies_ok": replies_ok,
            "register_s": register_s,
            "false_positives": watcher.unregistered,
            "false_positives_during_hold": watcher.unregistered - unreg_before_hold,
            "alive_at_end": alive,
            "cpu_per_period_ms": (cpu1 - cpu0) / periods * 1000,
            "cpu_pct": (cpu1 - cpu0) / (w1 - w0) * 100,
            "controller_rss_mb": rss_mb(ctl.pid),
            "hb_period_ms": int(period * 1000),
            "hb_misses": info.get("hb_misses", 3),
        }
    finally:
        for f in fakes:
            try:
                f.stdin.write("stop\n")
                f.stdin.close()
            except (BrokenPipeError, ValueError):
                pass
        wait_gone([f.pid for f in fakes], 30)
        kill_all([f.pid for f in fakes if f.poll() is None])
        watcher.close()
        ctl.send_signal(signal.SIGTERM)
        if not wait_gone([ctl.pid], 30):
            kill_all([ctl.pid])
        wait_gone([ctl.pid], 5)
        shutil.rmtree(tmp, ignore_errors=True)


def _listen_drops() -> tuple[int, int]:
    """The kernel's TcpExt ListenOverflows and ListenDrops counters (SYNs dropped on a full accept queue)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return (0, 0)
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], (int(v) for v in values.split()[1:]), strict=False))
            return table.get("ListenOverflows", 0), table.get("ListenDrops", 0)
    return (0, 0)


def _wait_registrations(watcher: _Watcher, engines: int, limit: float, stall: float) -> None:
    """Until every engine registered, no new registration for ``stall`` s, or ``limit`` s in all."""
    start = time.perf_counter()
    last_count, last_change = 0, start
    while time.perf_counter() - start < limit:
        watcher.drain()
        if watcher.registered >= engines:
            return
        if watcher.registered != last_count:
            last_count, last_change = watcher.registered, time.perf_counter()
        elif time.perf_counter() - last_change > stall:
            return
        time.sleep(0.01)


def _registration_replies(fakes: list[subprocess.Popen], timeout: float) -> int | None:
    """Sum of the ``registered <ok> ...`` lines of the fakes; None if one has not finished registering."""
    import select

    total = 0
    for f in fakes:
        ready, _, _ = select.select([f.stdout], [], [], timeout)
        if not ready:
            return None
        parts = f.stdout.readline().split()
        total += int(parts[1]) if len(parts) == 4 else 0
    return total


def simulate(engines: list[int], procs: int, hold_s: float) -> dict:
    _raise_fd_limit()
    runs = [_simulate_one(n, procs, hold_s) for n in engines]
    first = runs[0]
    return {
        "runs": runs,
        "procs": procs,
        "hold_s": hold_s,
        "hb_period_ms": first["hb_period_ms"],
        "hb_misses": first["hb_misses"],
    }


def soak(adapter, tasks: int, batch: int, budget_s: float) -> dict:
    """Tiny tasks in batches through a LoadBalancedView; RSS of controller and client after each batch."""
    cluster, rc = adapter._start(2)
    adapter.cluster, adapter.rc = cluster, rc
    try:
        ctl = adapter.controller_pid()
        me = os.getpid()
        lview = rc.load_balanced_view()
        lview.map_sync(noop_arg, range(100))
        gc.collect()
        before = {"controller_mb": rss_mb(ctl), "client_mb": rss_mb(me)}
        samples = []
        done = 0
        t0 = time.perf_counter()
        error = None
        while done < tasks and time.perf_counter() - t0 < budget_s:
            n = min(batch, tasks - done)
            ars = [lview.apply_async(noop) for _ in range(n)]
            try:
                for ar in ars:
                    ar.get(timeout=600)
            except Exception as exc:  # keep the memory figures so far; the failure itself is a finding
                error = f"after {done:,} tasks: {type(exc).__name__}: {exc}"
                break
            finally:
                del ars
            done += n
            samples.append(
                {
                    "done": done,
                    "t": time.perf_counter() - t0,
                    "controller_mb": rss_mb(ctl),
                    "client_mb": rss_mb(me),
                }
            )
        elapsed = time.perf_counter() - t0
        gc.collect()
        time.sleep(3)
        after = {"controller_mb": rss_mb(ctl), "client_mb": rss_mb(me)}
        if error:
            _keep_logs(adapter.tmp, "soak")
    finally:
        adapter.close()
    half = samples[len(samples) // 2] if samples else {"done": 0, "controller_mb": 0, "client_mb": 0}
    last = samples[-1] if samples else half
    span = max(last["done"] - half["done"], 1)
    growth = {
        "controller_mb": last["controller_mb"] - half["controller_mb"],
        "client_mb": last["client_mb"] - half["client_mb"],
    }
    per100k = {k: v / span * 100_000 for k, v in growth.items()}
    return {
        "tasks_requested": tasks,
        "error": error,
        "tasks_done": done,
        "batch": batch,
        "elapsed_s": elapsed,
        "tps": done / elapsed if elapsed else 0,
        "before": before,
        "after": after,
        "samples": samples,
        "growth": growth,
        "growth_per_100k_mb": per100k,
        "flat": all(v <= 2.0 for v in per100k.values()),
    }


def _keep_logs(profile_dir: str, label: str) -> None:
    """Copy the cluster's logs next to the results (BENCH_LOGS, set by run.py) before the profile is removed."""
    dest = os.environ.get("BENCH_LOGS")
    if not dest:
        return
    target = Path(dest) / f"ipcluster-{label}-{time.strftime('%H%M%S')}"
    for log in Path(profile_dir).rglob("*.log"):
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, target / log.name)


def noop_arg(x):
    return None
