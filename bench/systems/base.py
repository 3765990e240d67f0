"""The interface every system adapter implements; a workload an adapter lacks is reported as n/a."""

from __future__ import annotations

from typing import Any

Metrics = dict[str, Any]


class Unsupported(Exception):
    """This system has no counterpart for the workload (shown as n/a, never as zero)."""


class Adapter:
    """A system under test. ``options`` come from the harness (e.g. ``signature_scheme``)."""

    name = ""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def startup(self, n: int) -> Metrics:
        """Start N engines from nothing, wait until all are ready, stop, wait until no process is left."""
        raise Unsupported

    def open(self, n: int) -> None:
        """Start a cluster of ``n`` engines for the session workloads below."""

    def close(self) -> None:
        """Stop the session's cluster and make sure none of its processes is left."""

    def roundtrip(self, calls: int) -> Metrics:
        raise Unsupported

    def throughput(self, tasks: int, chunksize: int) -> Metrics:
        raise Unsupported

    def data(self, nbytes: int) -> Metrics:
        raise Unsupported

    def footprint(self) -> Metrics:
        raise Unsupported

    def failure(self, timeout: float) -> Metrics:
        raise Unsupported

    def soak(self, **params: Any) -> Metrics:
        raise Unsupported

    def simulate(self, **params: Any) -> Metrics:
        raise Unsupported
