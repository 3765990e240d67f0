"""ipcluster (this repository, in the current environment) with its defaults: ``ipcluster.Cluster``.

``signature_scheme`` (option) picks the message signature; the default is hmac-sha256. The scale
workloads (simulated engines, the long soak) live in ``ipcluster_scale`` and are only run on our system.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time

from common import kill_all

from systems.base import Metrics
from systems.ipp_api import IPPStyleAdapter


class IPClusterAdapter(IPPStyleAdapter):
    name = "ipcluster"

    def _config(self) -> dict:
        scheme = self.options.get("signature_scheme")
        return {"controller": {"signature_scheme": scheme}} if scheme else {}

    def _start(self, n: int):
        import ipcluster as ipp

        self.tmp = tempfile.mkdtemp(prefix="bench-ipc-")
        cluster = ipp.Cluster(n=n, profile_dir=self.tmp, config=self._config(), shutdown_atexit=True)
        rc = cluster.start_and_connect_sync()
        rc.wait_for_engines(n, timeout=120)
        return cluster, rc

    @staticmethod
    def _stop(cluster, rc) -> None:
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
        info = json.loads(self.cluster.connection_file("client").read_text())
        return int(info["controller_pid"])

    def simulate(self, **params) -> Metrics:
        from systems.ipcluster_scale import simulate

        return simulate(**params)

    def soak(self, **params) -> Metrics:
        from systems.ipcluster_scale import soak

        return soak(self, **params)
