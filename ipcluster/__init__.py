"""ipcluster: an interactive parallel-computing cluster for Python.

The public API keeps the seed's (IPython.parallel) and ipyparallel's names, so ``import ipcluster as ipp``
is enough to run code written for them::

    import ipcluster as ipp
    rc = ipp.Client(profile="default")
    rc[:].apply_sync(lambda: 42)
"""

from __future__ import annotations

from typing import Any

from . import error
from .client import (
    AsyncHubResult,
    AsyncMapResult,
    AsyncResult,
    Client,
    Dependency,
    DirectView,
    LoadBalancedView,
    ParallelFunction,
    RemoteFunction,
    View,
    depend,
    dependent,
    parallel,
    remote,
    require,
)
from .error import (
    CompositeError,
    EngineError,
    ImpossibleDependency,
    InvalidDependency,
    NoEnginesRegistered,
    RemoteError,
    TaskAborted,
    TaskTimeout,
    TimeoutError,  # noqa: A004 - the seed's public name
    UnmetDependency,
)
from .wire import Reference, interactive

__version__ = "0.1.0"
version_info = (0, 1, 0)

__all__ = [
    "AsyncHubResult",
    "AsyncMapResult",
    "AsyncResult",
    "Client",
    "Cluster",
    "CompositeError",
    "Dependency",
    "DirectView",
    "EngineError",
    "ImpossibleDependency",
    "InvalidDependency",
    "LoadBalancedView",
    "NoEnginesRegistered",
    "ParallelFunction",
    "Reference",
    "RemoteError",
    "RemoteFunction",
    "TaskAborted",
    "TaskTimeout",
    "TimeoutError",
    "UnmetDependency",
    "View",
    "depend",
    "dependent",
    "error",
    "interactive",
    "parallel",
    "remote",
    "require",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """``Cluster`` (and ``ClusterManager``) load on first use, so importing ipcluster never pulls in the
    launchers and import order between modules cannot break."""
    if name in ("Cluster", "ClusterManager"):
        from . import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module 'ipcluster' has no attribute {name!r}")
