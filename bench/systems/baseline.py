"""The floors everything is measured against: raw pyzmq between two processes, ProcessPoolExecutor.

Run in our environment (``sys.executable``). The round trip is one DEALER<->ROUTER ping-pong of a 4-byte
frame; the data figure is one 100 MB frame and its ack (also with a keyed digest on both ends, the cost an
authenticated transfer cannot avoid); throughput is ``ProcessPoolExecutor(n).map(chunksize=1)``; start-up is
N bare Python interpreters importing zmq; footprint is such an idle interpreter.
"""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import zmq
from common import MB, ident, make_array, median_call_us, rss_mb, timed_median, wait_gone

from systems.base import Adapter, Metrics

PEER = str(Path(__file__).with_name("zmq_peer.py"))
KEY = b"bench-key"


def _digest(scheme: str, buf) -> str:
    if scheme == "hmac-sha256":
        return hmac.digest(KEY, buf, "sha256").hex()
    import blake3

    return blake3.blake3(buf, key=hashlib.sha256(KEY).digest(), max_threads=blake3.blake3.AUTO).hexdigest()


class BaselineAdapter(Adapter):
    name = "baseline"

    def startup(self, n: int) -> Metrics:
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, "-c", "import zmq"]) for _ in range(n)]
        for p in procs:
            p.wait()
        return {"start_s": time.perf_counter() - t0}

    def open(self, n: int) -> None:
        self.n = n
        self.peer = subprocess.Popen([sys.executable, PEER], stdout=subprocess.PIPE, text=True)
        port = int(self.peer.stdout.readline())
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.pool = ProcessPoolExecutor(n)
        list(self.pool.map(ident, range(2 * n)))  # workers up before anything is timed

    def close(self) -> None:
        self.sock.send(b"stop")
        self.sock.recv_multipart()
        self.sock.close(linger=0)
        self.ctx.term()
        self.pool.shutdown()
        self.peer.wait(10)
        wait_gone([self.peer.pid])

    def _ping(self) -> None:
        self.sock.send(b"ping")
        self.sock.recv()

    def roundtrip(self, calls: int) -> Metrics:
        us = median_call_us(self._ping, calls)
        return {"direct_us": us, "lb_us": us, "raw_us": us}

    def throughput(self, tasks: int, chunksize: int) -> Metrics:
        t0 = time.perf_counter()
        out = list(self.pool.map(ident, range(tasks), chunksize=1))
        t1 = time.perf_counter()
        out2 = list(self.pool.map(ident, range(tasks), chunksize=chunksize))
        t2 = time.perf_counter()
        assert len(out) == len(out2) == tasks
        return {"map_tps": tasks / (t1 - t0), "map_chunked_tps": tasks / (t2 - t1)}

    def _push(self, buf, scheme: str = "") -> None:
        if scheme:
            _digest(scheme, buf)
        self.sock.send_multipart([f"push:{scheme}".encode(), buf], copy=False)
        self.sock.recv_multipart()

    def _pull(self, nbytes: int) -> None:
        self.sock.send(f"pull:{nbytes}".encode())
        got = self.sock.recv(copy=False)
        assert len(got.buffer) == nbytes

    def data(self, nbytes: int) -> Metrics:
        arr = make_array(nbytes)
        buf = memoryview(arr).cast("B")
        size = buf.nbytes / MB
        out = {
            "push_MBps": size / timed_median(lambda: self._push(buf)),
            "pull_MBps": size / timed_median(lambda: self._pull(buf.nbytes)),
            "push_hmac_MBps": size / timed_median(lambda: self._push(buf, "hmac-sha256")),
        }
        try:
            out["push_blake3_MBps"] = size / timed_median(lambda: self._push(buf, "blake3"))
        except ImportError:
            pass
        return out

    def footprint(self) -> Metrics:
        rss = rss_mb(self.peer.pid)
        return {"controller_rss_mb": rss, "engine_rss_mb": rss}
