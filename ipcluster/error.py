"""Every exception ipcluster raises, in one hierarchy.

The names follow the seed's ``IPython.parallel.error`` module, so code that catches
``ipp.RemoteError`` or ``ipp.error.TimeoutError`` keeps working. This module imports nothing else from
ipcluster: every layer may use it.
"""

from __future__ import annotations

import builtins
from typing import Any

__all__ = [
    "IPClusterError",
    "WireError",
    "InvalidSignature",
    "ReplayedMessage",
    "MalformedMessage",
    "ConnectionFileError",
    "ConfigError",
    "ProfileError",
    "KernelError",
    "NoEnginesRegistered",
    "TimeoutError",
    "EngineError",
    "TaskAborted",
    "TaskTimeout",
    "DependencyTimeout",
    "RemoteError",
    "CompositeError",
    "InvalidDependency",
    "ImpossibleDependency",
    "UnmetDependency",
    "AuthenticationError",
    "SerializationError",
    "wrap_exception",
    "unwrap_exception",
    "collect_exceptions",
]


class IPClusterError(Exception):
    """Base class of every ipcluster error."""


class WireError(IPClusterError):
    """A message could not be accepted off the wire."""


class InvalidSignature(WireError):
    """The signature is missing or does not match the key: the message is dropped."""


class ReplayedMessage(WireError):
    """The signature was seen before: a replayed message is dropped."""


class MalformedMessage(WireError):
    """The frames are not a message: no delimiter, too few frames, or frames that are not JSON."""


class SerializationError(IPClusterError, TypeError):
    """An object could not be pickled for the wire; the message names the object."""


class AuthenticationError(IPClusterError):
    """The controller refused our signature: our key does not match its key."""


class ConnectionFileError(IPClusterError):
    """A connection file is missing, unreadable, too widely readable, or of an unknown version."""


class ConfigError(IPClusterError):
    """A configuration file or option has an unknown key, a wrong type or a bad value."""


class ProfileError(IPClusterError):
    """A profile does not exist, or already exists."""


class KernelError(IPClusterError):
    """Base of the errors about remote execution (the seed's name)."""


class NoEnginesRegistered(KernelError):
    """There are no engines to run on."""


class TimeoutError(KernelError, builtins.TimeoutError):  # noqa: A001 - the seed's public name
    """A result or a reply did not arrive in time."""


class EngineError(KernelError):
    """The engine running a task died, or could not be reached."""


class TaskAborted(KernelError):
    """The task was aborted before it ran."""


class TaskTimeout(KernelError):
    """A load-balanced task waited longer than its timeout for its dependencies."""


DependencyTimeout = TaskTimeout


class InvalidDependency(KernelError):
    """A dependency names itself or a task the scheduler never saw."""


class ImpossibleDependency(KernelError):
    """No engine can ever satisfy the dependency."""


class UnmetDependency(KernelError):
    """Raised on an engine when a functional dependency does not hold there."""


class RemoteError(KernelError):
    """An exception raised on an engine, carried back with its traceback.

    Printed like a local traceback, prefixed with the engine that raised it.
    """

    def __init__(
        self,
        ename: str,
        evalue: str,
        traceback: str | list[str] | None = None,
        engine_info: dict[str, Any] | None = None,
    ) -> None:
        self.ename = ename
        self.evalue = evalue
        if isinstance(traceback, list):
            traceback = "".join(traceback)
        self.traceback = traceback or ""
        self.engine_info = dict(engine_info or {})
        super().__init__(ename, evalue)

    @property
    def engine_id(self) -> int | None:
        return self.engine_info.get("engine_id")

    def __repr__(self) -> str:
        return f"<RemoteError[{self.engine_id}]:{self.ename}({self.evalue!r})>"

    def __str__(self) -> str:
        return f"[{self.engine_id}:{self.engine_info.get('method', 'apply')}]: {self.ename}: {self.evalue}"

    def render_traceback(self) -> list[str]:
        """Lines to print, IPython-style: the remote traceback instead of the local one."""
        header = f"[Engine Exception on engine {self.engine_id}]"
        return [header] + (self.traceback or f"{self.ename}: {self.evalue}").splitlines()

    def print_traceback(self) -> None:
        print("\n".join(self.render_traceback()))

    # The seed's and ipyparallel's CompositeError.elist holds (ename, evalue, traceback, engine_info)
    # tuples; an element here is the RemoteError itself and also unpacks and indexes like that tuple.
    def _fields(self) -> tuple[str, str, str, dict[str, Any]]:
        return (self.ename, self.evalue, self.traceback, self.engine_info)

    def __iter__(self) -> Any:
        return iter(self._fields())

    def __getitem__(self, index: int | slice) -> Any:
        return self._fields()[index]


class CompositeError(RemoteError):
    """Errors raised on several engines at once (one per failed task)."""

    tb_limit = 4

    def __init__(self, message: str, elist: list[RemoteError]) -> None:
        self.message = message
        self.elist = list(elist)
        first = self.elist[0] if self.elist else None
        super().__init__(
            first.ename if first else "CompositeError",
            first.evalue if first else message,
            first.traceback if first else "",
            first.engine_info if first else {},
        )

    def __str__(self) -> str:
        lines = [f"{self.message} ({len(self.elist)} errors)"]
        for err in self.elist[: self.tb_limit]:
            lines.append(str(err))
        if len(self.elist) > self.tb_limit:
            lines.append(f".... {len(self.elist) - self.tb_limit} more exceptions ...")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"CompositeError({len(self.elist)} errors)"

    def render_traceback(self, excid: int | None = None) -> list[str]:
        chosen = self.elist if excid is None else [self.elist[excid]]
        lines: list[str] = []
        for err in chosen:
            lines.extend(err.render_traceback())
            lines.append("")
        return lines

    def print_traceback(self, excid: int | None = None) -> None:  # type: ignore[override]
        """Print every engine's traceback, or only the one at index ``excid`` of ``elist``."""
        print("\n".join(self.render_traceback(excid)))

    def raise_exception(self, excid: int = 0) -> None:
        """Re-raise one of the collected errors by its index."""
        raise self.elist[excid]


_BY_NAME = {
    name: obj for name, obj in dict(globals()).items() if isinstance(obj, type) and issubclass(obj, Exception)
}


def wrap_exception(exc: Any = None, engine_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn an exception raised here into reply content: ename, evalue, traceback, engine_info.

    Without ``exc`` (the seed's ``wrap_exception(engine_info)`` inside an ``except`` block), the exception
    being handled is wrapped.
    """
    import sys
    import traceback as tb_module

    if isinstance(exc, dict) and engine_info is None:  # the seed's positional engine_info
        exc, engine_info = None, exc
    if exc is None:
        exc = sys.exc_info()[1]
        if exc is None:
            raise ValueError("wrap_exception() needs an exception, or to be called while one is handled")

    if isinstance(exc, RemoteError) and not isinstance(exc, CompositeError):
        lines = [exc.traceback]
        ename, evalue = exc.ename, exc.evalue
    else:
        lines = tb_module.format_exception(type(exc), exc, exc.__traceback__)
        ename, evalue = type(exc).__name__, str(exc)
    return {
        "status": "error",
        "ename": ename,
        "evalue": evalue,
        "traceback": lines,
        "engine_info": dict(engine_info or {}),
    }


def unwrap_exception(content: dict[str, Any]) -> KernelError:
    """Turn error reply content back into an exception object.

    ipcluster's own task-level errors (EngineError, TaskAborted, ImpossibleDependency, ...) come back as
    themselves so they can be caught by class; anything raised by user code becomes a RemoteError.
    """
    ename = content.get("ename", "Exception")
    evalue = content.get("evalue", "")
    engine_info = content.get("engine_info") or {}
    own = _BY_NAME.get(ename)
    if own is not None and issubclass(own, KernelError) and own not in (RemoteError, CompositeError):
        if own in (UnmetDependency, ImpossibleDependency, InvalidDependency, EngineError, TaskTimeout):
            err = own(evalue)
            err.engine_info = engine_info  # type: ignore[attr-defined]
            err.ename, err.evalue = ename, evalue  # type: ignore[attr-defined]
            err.traceback = "".join(content.get("traceback") or [])  # type: ignore[attr-defined]
            return err
    return RemoteError(ename, evalue, content.get("traceback"), engine_info)


def collect_exceptions(results: Any, method: str = "unspecified") -> Any:
    """Raise a CompositeError if any result (of a list, or a dict's values) is a RemoteError; otherwise
    return the results. The errors of a CompositeError among them are taken in one by one."""
    elist: list[RemoteError] = []
    for r in results.values() if isinstance(results, dict) else results:
        if isinstance(r, CompositeError):
            elist.extend(r.elist)
        elif isinstance(r, RemoteError):
            elist.append(r)
    if not elist:
        return results
    raise CompositeError(f"one or more exceptions from call to method: {method}", elist)
