"""ipcluster (this repository, in the current environment) with its defaults: ``ipcluster.Cluster``.

``signature_scheme`` (option) picks the message signature; the default is hmac-sha256. The scale
workloads (simulated engines, the long soak) live in ``ipcluster_scale`` and are only run on our system.
"""

from __future__ import annotations

import json
import tempfile

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

    def data(self, nbytes: int) -> Metrics:
        """The shared figures (same-host engines: big buffers go through shared memory), plus push and pull
        through the sockets with shared memory off: what an engine on another host gets."""
        import numpy as np
        from common import MB, make_array, timed_median

        import ipcluster as ipp

        out = super().data(nbytes)
        arr = make_array(nbytes)
        size = arr.nbytes / MB
        with ipp.Client(profile_dir=self.tmp, shm_threshold=0) as sockets_only:
            e0 = sockets_only[sockets_only.ids[0]]
            out["push_tcp_MBps"] = size / timed_median(lambda: e0.push({"bench_t": arr}, block=True))
            back = e0.pull("bench_t", block=True)
            assert back.shape == arr.shape and np.array_equal(back[:1000], arr[:1000])
            del back
            out["pull_tcp_MBps"] = size / timed_median(lambda: e0.pull("bench_t", block=True))
            e0.execute("globals().pop('bench_t', None)", block=True)
        return out

    def controller_pid(self) -> int | None:
        info = json.loads(self.cluster.connection_file("client").read_text())
        return int(info["controller_pid"])

    def simulate(self, **params) -> Metrics:
        from systems.ipcluster_scale import simulate

        return simulate(**params)

    def soak(self, **params) -> Metrics:
        from systems.ipcluster_scale import soak

        return soak(self, **params)
