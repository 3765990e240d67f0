"""Launchers: how a cluster starts its controller and engines, found by name.

Built-in launchers live in this package, one module each. A plugin adds one through the entry-point group
``ipcluster.launchers``: the entry point names the launcher and points at a module (or object) with the
attributes ``controller_launcher`` and/or ``engine_launcher`` (Launcher subclasses)::

    [project.entry-points."ipcluster.launchers"]
    mycloud = "mycloud_ipcluster.launcher"
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from ipcluster.error import ConfigError

from .base import ControllerLauncher, EngineSetLauncher, LaunchContext, Launcher, LauncherState
from .batch import BatchControllerLauncher, BatchEngineSetLauncher, BatchLauncher
from .local import LocalControllerLauncher, LocalEngineSetLauncher, LocalLauncher, LocalProcess

ENTRY_POINT_GROUP = "ipcluster.launchers"
BUILTIN: dict[str, str] = {
    "local": "ipcluster.launchers.local",
    "mpi": "ipcluster.launchers.mpi",
    "ssh": "ipcluster.launchers.ssh",
}
PLANNED = ("slurm", "sge", "pbs", "lsf", "htcondor", "winhpc")
ROLES = {"controller": "controller_launcher", "engines": "engine_launcher"}


def available_launchers() -> list[str]:
    """Names usable today: built-ins and installed plugins."""
    return sorted(set(BUILTIN) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def find_launcher(name: str, role: str) -> type[Launcher]:
    """The launcher class called ``name`` for ``role`` ("controller" or "engines")."""
    attr = ROLES[role]
    source = _load(name)
    cls = getattr(source, attr, None)
    if cls is None:
        raise ConfigError(
            f"the {name!r} launcher cannot start the {role}; use another launcher for it (e.g. local)"
        )
    return cls


def _load(name: str) -> Any:
    if name in BUILTIN:
        return importlib.import_module(BUILTIN[name])
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    known = ", ".join(available_launchers())
    if name in PLANNED:
        raise ConfigError(f"the {name!r} launcher is not available in this version yet; available: {known}")
    import difflib

    close = difflib.get_close_matches(name, [*BUILTIN, *PLANNED], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"unknown launcher {name!r}{hint}; available: {known}")


def launcher_from_dict(data: dict[str, Any], ctx: LaunchContext) -> Launcher:
    """Rebuild a launcher from its registry entry (``Launcher.to_dict()``)."""
    cls = find_launcher(data["launcher"], data["role"])
    return cls.from_dict(data, ctx)


__all__ = [
    "BatchControllerLauncher",
    "BatchEngineSetLauncher",
    "BatchLauncher",
    "ControllerLauncher",
    "ENTRY_POINT_GROUP",
    "EngineSetLauncher",
    "LaunchContext",
    "Launcher",
    "LauncherState",
    "LocalControllerLauncher",
    "LocalEngineSetLauncher",
    "LocalLauncher",
    "LocalProcess",
    "available_launchers",
    "find_launcher",
    "launcher_from_dict",
]
