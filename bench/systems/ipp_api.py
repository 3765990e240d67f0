"""Workloads written once against the ipyparallel client API, which ipcluster keeps name for name.

Both ``ipyparallel_sys`` and ``ipcluster_sys`` subclass this and only say how a cluster is started,
stopped and which processes are its controller and engines.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from typing import Any

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


class IPPStyleAdapter(Adapter):
    """Start, stop and measure a cluster through the shared ipyparallel-style API.

    Subclasses implement ``_start(n) -> (cluster, rc)`` (setting ``self.tmp`` to the profile dir it made) and
    ``controller_pid``; start-up timing, session open/close and clean-up are the same for both systems.
    """

    rc: Any
    n: int
    tmp: str

    # -- hooks ---------------------------------------------------------------------------------------

    def _start(self, n: int) -> tuple[Any, Any]:
        raise NotImplementedError

    def controller_pid(self) -> int | None:
        raise NotImplementedError

    # -- lifecycle -----------------------------------------------------------------------------------

    @staticmethod
    def _stop(cluster: Any, rc: Any) -> None:
        rc.close()
        cluster.stop_cluster_sync()

    def _stop_and_clean(self, cluster: Any, rc: Any) -> float:
        pids = self.cluster_pids()
        try:
            return self.stop_and_wait(lambda: self._stop(cluster, rc), pids)
        finally:
            kill_all(self.cluster_pids())
            shutil.rmtree(self.tmp, ignore_errors=True)

    def startup(self, n: int) -> Metrics:
        t0 = time.perf_counter()
        cluster, rc = self._start(n)
        start = time.perf_counter() - t0
        return {"start_s": start, "stop_s": self._stop_and_clean(cluster, rc)}

    def open(self, n: int) -> None:
        self.n = n
        self.cluster, self.rc = self._start(n)

    def close(self) -> None:
        self._stop_and_clean(self.cluster, self.rc)

    def engine_pids(self) -> list[int]:
        return list(self.rc[:].apply_sync(os.getpid))

    # -- session workloads ---------------------------------------------------------------------------

    def roundtrip(self, calls: int) -> Metrics:
        e0 = self.rc[self.rc.ids[0]]
        lview = self.rc.load_balanced_view()
        direct = median_call_us(lambda: e0.apply_sync(noop), calls)
        lb = median_call_us(lambda: lview.apply_sync(noop), calls)
        return {"direct_us": direct, "lb_us": lb}

    def throughput(self, tasks: int, chunksize: int) -> Metrics:
        lview = self.rc.load_balanced_view()
        lview.map_sync(ident, range(4 * self.n))  # warm the function into every engine
        t0 = time.perf_counter()
        ars = [lview.apply_async(noop) for _ in range(tasks)]
        for ar in ars:
            ar.get(timeout=600)
        t1 = time.perf_counter()
        out = lview.map(ident, range(tasks), block=True)
        t2 = time.perf_counter()
        out2 = lview.map(ident, range(tasks), chunksize=chunksize, block=True)
        t3 = time.perf_counter()
        assert list(out) == list(out2) == list(range(tasks))
        return {
            "apply_async_tps": tasks / (t1 - t0),
            "map_tps": tasks / (t2 - t1),
            "map_chunked_tps": tasks / (t3 - t2),
        }

    def data(self, nbytes: int) -> Metrics:
        import numpy as np

        arr = make_array(nbytes)
        size = arr.nbytes / MB
        e0 = self.rc[self.rc.ids[0]]
        dview = self.rc[:]
        push = timed_median(lambda: e0.push({"bench_a": arr}, block=True))
        back = e0.pull("bench_a", block=True)
        assert back.shape == arr.shape and np.array_equal(back[:1000], arr[:1000])
        del back
        pull = timed_median(lambda: e0.pull("bench_a", block=True))
        scatter = timed_median(lambda: dview.scatter("bench_s", arr, block=True))
        gathered = dview.gather("bench_s", block=True)
        assert len(gathered) == len(arr)
        del gathered
        gather = timed_median(lambda: dview.gather("bench_s", block=True))
        dview.execute("globals().pop('bench_a', None); globals().pop('bench_s', None)", block=True)
        return {
            "push_MBps": size / push,
            "pull_MBps": size / pull,
            "scatter_MBps": size / scatter,
            "gather_MBps": size / gather,
        }

    def footprint(self) -> Metrics:
        pids = self.engine_pids()
        return {"controller_rss_mb": rss_mb(self.controller_pid()), "engine_rss_mb": rss_mb(pids[0])}

    def failure(self, timeout: float) -> Metrics:
        pid = self.engine_pids()[-1]
        before = len(self.rc.ids)
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        known = wait_for(lambda: len(self.rc.ids) < before, timeout, 0.005)
        took = time.perf_counter() - t0
        return {"detect_s": took if known else None, "detect_timeout_s": None if known else timeout}

    # -- helpers -------------------------------------------------------------------------------------

    @staticmethod
    def stop_and_wait(stop, pids: set[int], timeout: float = 60.0) -> float:
        """Call ``stop()``, then wait until none of ``pids`` is alive; seconds taken."""
        t0 = time.perf_counter()
        stop()
        if not wait_gone(pids, timeout):
            raise RuntimeError(f"processes still alive {timeout}s after stop: {sorted(pids)}")
        return time.perf_counter() - t0

    @staticmethod
    def cluster_pids() -> set[int]:
        return descendants()
