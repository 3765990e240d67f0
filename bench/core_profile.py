"""Core speed figures against their baselines, measured side by side in one run (issue 2 targets).

    python bench/core_profile.py [--quick] [--skip-push] [--profile DIR]

Figures: DirectView / LoadBalancedView round trip of a no-op vs a raw pyzmq DEALER<->ROUTER ping-pong between
two processes; 10,000 tiny tasks (apply_async loop and lview.map) vs ProcessPoolExecutor(2).map(chunksize=1);
one 100 MB push vs one raw 100 MB zmq message (hmac-sha256 and blake3 clusters). ``--profile DIR`` runs the
controller and engines under cProfile (via a sitecustomize on PYTHONPATH) and writes ``DIR/<pid>-<role>.prof``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor

import zmq

MB = 1024 * 1024

PEER = textwrap.dedent(
    """
    import sys, zmq
    ctx = zmq.Context(); s = ctx.socket(zmq.ROUTER)
    print(s.bind_to_random_port("tcp://127.0.0.1"), flush=True)
    while True:
        f = s.recv_multipart(copy=False)
        req = f[1].bytes
        if req == b"stop":
            s.send_multipart([f[0], b"bye"]); break
        s.send_multipart([f[0], b"ack" if len(f) > 2 else req])
    """
)

SITECUSTOMIZE = textwrap.dedent(
    """
    import atexit, cProfile, os, sys
    _dir = os.environ.get("CORE_PROFILE_DIR")
    _role = open("/proc/self/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace")
    if _dir and ("ipcluster.controller" in _role or "ipcluster.engine" in _role
                 or "ipcontroller" in _role or "ipengine" in _role):
        import time; _p = cProfile.Profile(time.thread_time); _p.enable()
        _name = "controller" if "controller" in _role else "engine"
        def _dump():
            _p.disable(); _p.dump_stats(os.path.join(_dir, f"{os.getpid()}-{_name}.prof"))
        atexit.register(_dump)
    """
)


def noop() -> None:
    return None


def ident(x: int) -> int:
    return x


def median_us(fn, calls: int) -> float:
    for _ in range(max(10, calls // 10)):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def best_s(fn, reps: int = 3) -> float:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return min(out)


class RawPeer:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", PEER], stdout=subprocess.PIPE, text=True)
        port = int(self.proc.stdout.readline())
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.connect(f"tcp://127.0.0.1:{port}")

    def ping(self) -> None:
        self.sock.send(b"ping")
        self.sock.recv()

    def push(self, buf) -> None:
        self.sock.send_multipart([b"push", buf], copy=False)
        self.sock.recv()

    def close(self) -> None:
        self.sock.send(b"stop")
        self.sock.recv()
        self.sock.close(0)
        self.ctx.term()
        self.proc.wait(10)


def cluster_pids(tmp: str) -> dict[str, list[int]]:
    """Controller and engine pids of the cluster whose profile dir is ``tmp`` (from /proc cmdlines)."""
    out: dict[str, list[int]] = {"controller": [], "engine": []}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if tmp in cmd and "ipcluster.controller" in cmd:
            out["controller"].append(int(entry))
        elif tmp in cmd and "ipcluster.engine" in cmd:
            out["engine"].append(int(entry))
    return out


def cpu_s(pid: int) -> float:
    """User+system CPU seconds of a process, all its threads (zmq IO threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_all(pids: dict[str, list[int]]) -> dict[str, float]:
    t = os.times()
    out = {"client": t.user + t.system}
    for role, ps in pids.items():
        out[role] = sum(cpu_s(p) for p in ps)
    return out


def start_cluster(scheme: str | None, n: int = 2):
    import ipcluster

    tmp = tempfile.mkdtemp(prefix="core-prof-")
    config = {"controller": {"signature_scheme": scheme}} if scheme else {}
    cluster = ipcluster.Cluster(n=n, profile_dir=tmp, config=config, shutdown_atexit=True)
    rc = cluster.start_and_connect_sync()
    rc.wait_for_engines(n, timeout=120)
    return tmp, cluster, rc


def stop_cluster(tmp, cluster, rc) -> None:
    rc.close()
    cluster.stop_cluster_sync()
    shutil.rmtree(tmp, ignore_errors=True)


def run(args) -> dict[str, float]:
    import numpy as np

    r: dict[str, float] = {}
    calls = 200 if args.quick else 500
    tasks = 3000 if args.quick else 10000

    peer = RawPeer()
    r["pingpong_us"] = median_us(peer.ping, calls * 2)
    pool = ProcessPoolExecutor(2)
    list(pool.map(ident, range(10)))
    r["ppe_tps"] = tasks / best_s(lambda: list(pool.map(ident, range(tasks), chunksize=1)), 2)
    pool.shutdown()
    arr = np.random.default_rng(0).integers(0, 255, 100 * MB, dtype=np.uint8)
    if not args.skip_push:
        r["raw_push_MBps"] = 100 / best_s(lambda: peer.push(memoryview(arr)), 3)

    tmp, cluster, rc = start_cluster(None)
    try:
        e0 = rc[rc.ids[0]]
        lview = rc.load_balanced_view()
        r["direct_us"] = median_us(lambda: e0.apply_sync(noop), calls)
        r["lb_us"] = median_us(lambda: lview.apply_sync(noop), calls)
        lview.map_sync(ident, range(8))

        def loop() -> None:
            ars = [lview.apply_async(noop) for _ in range(tasks)]
            for ar in ars:
                ar.get(timeout=600)

        pids = cluster_pids(tmp)
        c0 = cpu_all(pids)
        r["apply_async_tps"] = tasks / best_s(loop, 2)
        c1 = cpu_all(pids)
        for role in c0:
            r[f"cpu_{role}_us"] = (c1[role] - c0[role]) / (2 * tasks) * 1e6
        r["map_tps"] = tasks / best_s(lambda: lview.map(ident, range(tasks), block=True), 2)
        if not args.skip_push:
            r["push_hmac_MBps"] = 100 / best_s(lambda: e0.push({"a": arr}, block=True), 3)
            e0.execute("globals().pop('a', None)", block=True)
    finally:
        stop_cluster(tmp, cluster, rc)
    if not args.skip_push:
        tmp, cluster, rc = start_cluster("blake3")
        try:
            e0 = rc[rc.ids[0]]
            r["push_blake3_MBps"] = 100 / best_s(lambda: e0.push({"a": arr}, block=True), 3)
        finally:
            stop_cluster(tmp, cluster, rc)
        r["raw_push2_MBps"] = 100 / best_s(lambda: peer.push(memoryview(arr)), 3)
    peer.close()
    return r


def report(r: dict[str, float]) -> None:
    pp = r["pingpong_us"]
    print(f"ping-pong raw          {pp:8.0f} us")
    print(f"direct round trip      {r['direct_us']:8.0f} us  = {r['direct_us'] / pp:4.1f}x  (target <= 4x)")
    print(f"lb round trip          {r['lb_us']:8.0f} us  = {r['lb_us'] / pp:4.1f}x  (target <= 5x)")
    ppe = r["ppe_tps"]
    print(f"PPE(2).map chunksize=1 {ppe:8.0f} tasks/s")
    for k in ("apply_async_tps", "map_tps"):
        print(f"{k:22s} {r[k]:8.0f} tasks/s = {100 * r[k] / ppe:3.0f}%  (target >= 40%)")
    print(
        "CPU per apply_async task: "
        + ", ".join(f"{k[4:-3]} {r[k]:.0f} us" for k in r if k.startswith("cpu_"))
        + " (engine: both summed)"
    )
    if "raw_push_MBps" in r:
        raw = max(r["raw_push_MBps"], r["raw_push2_MBps"])
        print(f"raw zmq 100MB push     {raw:8.0f} MB/s")
        for k in ("push_hmac_MBps", "push_blake3_MBps"):
            print(f"{k:22s} {r[k]:8.0f} MB/s = {100 * r[k] / raw:3.0f}%  (target >= 70%)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer calls and tasks")
    ap.add_argument("--skip-push", action="store_true", help="skip the 100 MB push figures")
    ap.add_argument("--profile", metavar="DIR", help="cProfile the controller and engines into DIR")
    args = ap.parse_args()
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        site = tempfile.mkdtemp(prefix="core-prof-site-")
        with open(os.path.join(site, "sitecustomize.py"), "w") as f:
            f.write(SITECUSTOMIZE)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))
        os.environ["CORE_PROFILE_DIR"] = os.path.abspath(args.profile)
    report(run(args))


if __name__ == "__main__":
    main()
