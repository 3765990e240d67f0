"""The user-facing side of ipcluster: Client, views, AsyncResult, remote functions and dependencies."""

from .asyncresult import AsyncHubResult, AsyncMapResult, AsyncResult
from .client import Client
from .dependency import Dependency, depend, dependent, require
from .directview import DirectView
from .lbview import LoadBalancedView
from .metadata import Metadata
from .remotefunction import ParallelFunction, RemoteFunction, parallel, remote
from .view import View, ViewExecutor

__all__ = [
    "AsyncHubResult",
    "AsyncMapResult",
    "AsyncResult",
    "Client",
    "Dependency",
    "DirectView",
    "LoadBalancedView",
    "Metadata",
    "ParallelFunction",
    "RemoteFunction",
    "View",
    "ViewExecutor",
    "depend",
    "dependent",
    "parallel",
    "remote",
    "require",
]
