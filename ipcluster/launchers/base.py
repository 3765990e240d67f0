"""The launcher interface: how a cluster starts, watches and stops one group of processes.

A launcher owns either the controller or a set of engines. It is small on purpose:

- ``start()`` starts the processes (or submits the job) and returns without waiting for registration;
- ``stop(timeout)`` asks politely, then forces after ``timeout`` seconds, and returns when they are gone;
- ``signal(sig)`` forwards a signal; ``poll()`` reports a :class:`LauncherState`;
- ``to_dict()`` / ``from_dict()`` persist what was started (pids, hosts, job ids) in the cluster registry, so
  another process can stop or inspect it later;
- ``engine_count`` and ``log_paths`` say how many engines were asked for and where to look when they fail.

A way of starting processes is a subclass of :class:`Launcher` mixed with :class:`ControllerLauncher` or
:class:`EngineSetLauncher`, which build the ``python -m ipcluster.controller|engine`` command lines from the
config. Launchers are found by name: see ``ipcluster.launchers.find_launcher``.
"""

from __future__ import annotations

import enum
import sys
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ipcluster.profiles.config import Config, default_of, field_spec


class LauncherState(str, enum.Enum):
    NOT_STARTED = "not_started"
    RUNNING = "running"
    STOPPED = "stopped"
    UNKNOWN = "unknown"  # e.g. a batch job whose scheduler cannot be asked


@dataclass
class LaunchContext:
    """What every launcher needs to know about the cluster it works for."""

    profile_dir: Path
    cluster_id: str = ""
    config: Config = field(default_factory=Config)
    foreground: bool = (
        False  # tie the processes' lives to this process (local launchers: parent-death signal)
    )
    python: str = sys.executable

    @property
    def log_dir(self) -> Path:
        return self.profile_dir / "log"

    @property
    def cluster_label(self) -> str:
        return self.cluster_id or "default"


class Launcher(ABC):
    """Base of every launcher; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    role: ClassVar[str] = ""  # "controller" or "engines"

    def __init__(
        self, ctx: LaunchContext, n: int = 1, extra_args: Sequence[str] = (), first_index: int = 0
    ) -> None:
        self.ctx = ctx
        self.n = n
        self.extra_args = list(extra_args)
        self.first_index = first_index  # engines added later get log files numbered after the first ones

    @abstractmethod
    def start(self) -> None:
        """Start the processes (or submit the job); does not wait for them to register."""

    @abstractmethod
    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM (or cancel), then SIGKILL after ``timeout`` s (default ``[cluster] stop_timeout``)."""

    @abstractmethod
    def signal(self, sig: int) -> None:
        """Send ``sig`` to every process this launcher started."""

    @abstractmethod
    def poll(self) -> LauncherState:
        """The current state, checked against the real processes (never just remembered)."""

    @property
    def running(self) -> bool:
        return self.poll() == LauncherState.RUNNING

    @property
    def engine_count(self) -> int:
        return self.n if self.role == "engines" else 0

    @property
    def log_paths(self) -> list[Path]:
        return []

    def state_dict(self) -> dict[str, Any]:
        """The launcher-specific part of ``to_dict()`` (pids, job ids ...)."""
        return {}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict()`` saved."""
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "launcher": self.name,
            "role": self.role,
            "n": self.n,
            "engine_count": self.engine_count,
            "first_index": self.first_index,
            "extra_args": self.extra_args,
            "log_paths": [str(p) for p in self.log_paths],
            "state": self.state_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], ctx: LaunchContext) -> Launcher:
        launcher = cls(
            ctx,
            n=int(data.get("n", 1)),
            extra_args=data.get("extra_args", []),
            first_index=int(data.get("first_index", 0)),
        )
        launcher.load_state(data.get("state") or {})
        return launcher

    def describe(self) -> str:
        """For error messages: which launcher, and where its logs are."""
        logs = ", ".join(str(p) for p in self.log_paths) or str(self.ctx.log_dir)
        return f"the {self.name} {self.role} launcher (logs: {logs})"

    @property
    def stop_timeout(self) -> float:
        return self.ctx.config.cluster.stop_timeout

    @abstractmethod
    def program_args(self, index: int = 0) -> list[str]:
        """The arguments after ``python`` for one process (role mixins provide this)."""


def _changed(section: str, obj: Any, key: str) -> Any:
    """The value of ``key`` if it differs from its default, else None (only changed options are passed)."""
    value = getattr(obj, key)
    return None if value == default_of(field_spec(section, key)) else value


class ControllerLauncher(Launcher):
    """Mixin: a launcher that starts the controller."""

    role = "controller"
    _OPTIONS = (
        ("ip", "--ip"), ("location", "--location"), ("transport", "--transport"), ("port", "--port"),
        ("ports", "--ports"), ("ping", "--ping"), ("hb_misses", "--hb-misses"), ("scheme", "--scheme"),
        ("hwm", "--hwm"), ("signature_scheme", "--signature-scheme"), ("db", "--db"), ("ssh", "--ssh"),
        ("enginessh", "--enginessh"), ("log_level", "--log-level"),
    )  # fmt: skip

    def program_args(self, index: int = 0) -> list[str]:
        cfg = self.ctx.config.controller
        args = ["-m", "ipcluster.controller", "--profile-dir", str(self.profile_dir_arg())]
        if self.ctx.cluster_id:
            args += ["--cluster-id", self.ctx.cluster_id]
        args += ["--ip", cfg.ip]  # always explicit: the controller must bind where the launcher expects
        for key, flag in self._OPTIONS[1:]:
            value = _changed("controller", cfg, key)
            if value is not None:
                args += [flag, str(value)]
        if not cfg.secure:
            args.append("--no-secure")
        if cfg.reuse:
            args.append("--reuse")
        return args + list(cfg.extra_args) + self.extra_args

    def profile_dir_arg(self) -> Path | str:
        return self.ctx.profile_dir


class EngineSetLauncher(Launcher):
    """Mixin: a launcher that starts ``n`` engines."""

    role = "engines"

    def program_args(self, index: int = 0) -> list[str]:
        cfg = self.ctx.config.engine
        args = ["-m", "ipcluster.engine", "--profile-dir", str(self.profile_dir_arg())]
        if self.ctx.cluster_id:
            args += ["--cluster-id", self.ctx.cluster_id]
        for key, flag in (("timeout", "--timeout"), ("hb_grace", "--hb-grace"), ("log_level", "--log-level")):
            value = _changed("engine", cfg, key)
            if value is not None:
                args += [flag, str(value)]
        return args + list(cfg.extra_args) + self.extra_args

    def profile_dir_arg(self) -> Path | str:
        return self.ctx.profile_dir
