"""ipyparallel (latest from PyPI, in bench/.venvs/ipyparallel) with its defaults: ``ipp.Cluster``."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time

from common import kill_all

from systems.base import Metrics
from systems.ipp_api import IPPStyleAdapter


class IPyParallelAdapter(IPPStyleAdapter):
    name = "ipyparallel"

    def _start(self, n: int):
        import ipyparallel as ipp

        self.tmp = tempfile.mkdtemp(prefix="bench-ipp-")
        cluster = ipp.Cluster(n=n, profile_dir=self.tmp, log_level=logging.WARNING)
        rc = cluster.start_and_connect_sync()
        rc.wait_for_engines(n, timeout=120)
        return cluster, rc

    def _stop(self, cluster, rc) -> None:
        rc.close()
        cluster.stop_cluster_sync()

    def startup(self, n: int) -> Metrics:
        t0 = time.perf_counter()
        cluster, rc = self._start(n)
        start = time.perf_counter() - t0
        pids = self.cluster_pids()
        try:
            stop = self.stop_and_wait(lambda: self._stop(cluster, rc), pids)
        finally:
            kill_all(self.cluster_pids())
            shutil.rmtree(self.tmp, ignore_errors=True)
        return {"start_s": start, "stop_s": stop}

    def open(self, n: int) -> None:
        self.n = n
        self.cluster, self.rc = self._start(n)

    def close(self) -> None:
        pids = self.cluster_pids()
        try:
            self.stop_and_wait(lambda: self._stop(self.cluster, self.rc), pids)
        finally:
            kill_all(self.cluster_pids())
            shutil.rmtree(self.tmp, ignore_errors=True)

    def controller_pid(self) -> int | None:
        return self.cluster.controller.process.pid
