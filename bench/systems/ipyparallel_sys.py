"""ipyparallel (latest from PyPI, in bench/.venvs/ipyparallel) with its defaults: ``ipp.Cluster``."""

from __future__ import annotations

import logging
import tempfile

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

    def controller_pid(self) -> int | None:
        return self.cluster.controller.process.pid
