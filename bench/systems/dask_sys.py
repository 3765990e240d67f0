"""dask ``distributed`` (latest from PyPI, in bench/.venvs/dask) with its defaults: ``LocalCluster``.

Defaults kept: processes with a nanny each, one thread per worker (so a worker is an engine), no
dashboard (it would only add start-up time). The scheduler runs inside the client process, so its
footprint is that process; dask has no DirectView: the direct round trip pins ``submit`` to one worker.
"""

from __future__ import annotations

import os
import signal
import time

from common import (
    MB,
    descendants,
    ident,
    kill_all,
    make_array,
    median_call_us,
    noop,
    rss_mb,
    timed_median,
    wait_for,
    wait_gone,
)

from systems.base import Adapter, Metrics


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


class DaskAdapter(Adapter):
    name = "dask"

    def _start(self, n: int):
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
        client.wait_for_workers(n, timeout=120)
        return cluster, client

    @staticmethod
    def _stop(cluster, client) -> None:
        client.close()
        cluster.close()

    def startup(self, n: int) -> Metrics:
        t0 = time.perf_counter()
        cluster, client = self._start(n)
        start = time.perf_counter() - t0
        pids = descendants()
        t1 = time.perf_counter()
        self._stop(cluster, client)
        ok = wait_gone(pids, 60)
        stop = time.perf_counter() - t1
        kill_all(descendants())
        if not ok:
            raise RuntimeError("dask processes still alive 60 s after close")
        return {"start_s": start, "stop_s": stop}

    def open(self, n: int) -> None:
        self.n = n
        self.cluster, self.client = self._start(n)
        self.workers = sorted(self.client.scheduler_info()["workers"])

    def close(self) -> None:
        pids = descendants()
        self._stop(self.cluster, self.client)
        wait_gone(pids, 60)
        kill_all(descendants())

    def roundtrip(self, calls: int) -> Metrics:
        c, w0 = self.client, self.workers[:1]
        direct = median_call_us(lambda: c.submit(noop, pure=False, workers=w0).result(), calls)
        lb = median_call_us(lambda: c.submit(noop, pure=False).result(), calls)
        return {"direct_us": direct, "lb_us": lb}

    def throughput(self, tasks: int, chunksize: int) -> Metrics:
        c = self.client
        c.gather(c.map(ident, range(4 * self.n), pure=False))
        t0 = time.perf_counter()
        futs = [c.submit(noop, pure=False) for _ in range(tasks)]
        c.gather(futs)
        t1 = time.perf_counter()
        out = c.gather(c.map(ident, range(tasks), pure=False))
        t2 = time.perf_counter()
        assert out == list(range(tasks))
        del futs
        return {"apply_async_tps": tasks / (t1 - t0), "map_tps": tasks / (t2 - t1)}

    def data(self, nbytes: int) -> Metrics:
        import numpy as np

        c = self.client
        arr = make_array(nbytes)
        size = arr.nbytes / MB
        held: list = []

        def push() -> None:
            held[:] = [c.scatter(arr, workers=self.workers[:1])]

        push_s = timed_median(push)
        fut = held[0]
        back = fut.result()
        assert back.shape == arr.shape and np.array_equal(back[:1000], arr[:1000])
        del back
        pull_s = timed_median(lambda: c.gather(fut))
        chunks = np.array_split(arr, self.n)

        def scatter() -> None:
            held[:] = [c.scatter(chunks)]

        scatter_s = timed_median(scatter)
        parts = held[0]
        assert sum(len(p) for p in c.gather(parts)) == len(arr)
        gather_s = timed_median(lambda: c.gather(parts))
        held.clear()
        return {
            "push_MBps": size / push_s,
            "pull_MBps": size / pull_s,
            "scatter_MBps": size / scatter_s,
            "gather_MBps": size / gather_s,
        }

    def _worker_pids(self) -> dict[str, int]:
        return self.client.run(os.getpid)

    def footprint(self) -> Metrics:
        wpid = self._worker_pids()[self.workers[0]]
        out = {"controller_rss_mb": rss_mb(os.getpid()), "engine_rss_mb": rss_mb(wpid)}
        if _parent(wpid) != os.getpid():  # LocalCluster keeps its nannies in the client process
            out["nanny_rss_mb"] = rss_mb(_parent(wpid))
        return out

    def failure(self, timeout: float) -> Metrics:
        pid = self._worker_pids()[self.workers[-1]]

        def count(dask_scheduler=None) -> int:
            return len(dask_scheduler.workers)

        before = self.client.run_on_scheduler(count)
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        known = wait_for(lambda: self.client.run_on_scheduler(count) < before, timeout, 0.005)
        took = time.perf_counter() - t0
        return {"detect_s": took if known else None, "detect_timeout_s": None if known else timeout}
