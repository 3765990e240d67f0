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
    """The client's names and ``Cluster`` load on first use: an engine or controller process, which imports
    this package too, then never pays for the client (asyncio and all) or the launchers at start-up."""
    if name in ("Cluster", "ClusterManager"):
        from . import cluster

        value = getattr(cluster, name)
    elif name in __all__:  # every other public name not imported above is the client's
        from . import client

        value = getattr(client, name)
    else:
        raise AttributeError(f"module 'ipcluster' has no attribute {name!r}")
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | {"ClusterManager"})
