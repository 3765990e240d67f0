"""The local launcher: the controller and engines as child processes of this machine.

Each process runs in its own session (its own process group), so a Ctrl-C in the terminal reaches only
``ipcluster start``, which then stops them in order, and a stop signals the whole group (children included).
Output goes to a log file in the profile's ``log/`` directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

from ipcluster.error import IPClusterError

from .base import ControllerLauncher, EngineSetLauncher, Launcher, LauncherState
from .process import (
    group_alive,
    parent_death_signal,
    pid_alive,
    proc_start_time,
    reused,
    signal_group,
    wait_until,
)


class OtherHostError(IPClusterError):
    """The processes were started on another host (a profile on a shared filesystem): act there."""


class LocalProcess:
    """One child process in its own process group, with its log file; persistable as a dict."""

    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.argv = argv
        self.log_path = log_path
        self.pid: int | None = None
        self.start_time: int | None = None
        self.host = socket.gethostname()
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str] | None = None, foreground: bool = False) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
                preexec_fn=parent_death_signal() if foreground else None,
            )
        self.pid = self._popen.pid
        self.start_time = proc_start_time(self.pid)

    @property
    def on_this_host(self) -> bool:
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        return pid_alive(self.pid, self.start_time)

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen is not None else None

    def signal(self, sig: int) -> bool:
        if self.pid is None:
            return False
        if self._popen is not None and self._popen.poll() is not None and not group_alive(self.pid):
            return False
        return signal_group(self.pid, self.pid, self.start_time, sig)

    def gone(self) -> bool:
        """Dead and reaped, with no orphans left in its group."""
        if self.pid is None:
            return True
        if self._popen is not None:
            self._popen.poll()
        if self.alive():
            return False
        if self.start_time is not None and reused(self.pid, self.start_time):
            return True  # the pid (and so the group id) now belongs to someone else
        return not group_alive(self.pid)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "pgid": self.pid,
            "start_time": self.start_time,
            "host": self.host,
            "log": str(self.log_path),
            "argv": self.argv,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalProcess:
        proc = cls(list(data.get("argv", [])), Path(data.get("log", "")))
        proc.pid = data.get("pid")
        proc.start_time = data.get("start_time")
        proc.host = data.get("host", proc.host)
        return proc


def stop_processes(processes: list[LocalProcess], timeout: float) -> None:
    """SIGTERM every group, wait up to ``timeout`` s for all of them, then SIGKILL what is left."""
    for proc in processes:
        proc.signal(signal.SIGTERM)
    if not wait_until(lambda: all(p.gone() for p in processes), timeout):
        for proc in processes:
            proc.signal(signal.SIGKILL)
        wait_until(lambda: all(p.gone() for p in processes), 5.0)


class LocalLauncher(Launcher):
    """Starts ``n`` (1 for the controller) local processes of ``program_args``."""

    name = "local"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.processes: list[LocalProcess] = []

    def log_path(self, index: int) -> Path:
        raise NotImplementedError

    def count(self) -> int:
        return self.n

    def env(self) -> dict[str, str]:
        section = self.ctx.config.launcher("local")
        return dict(section.env) if section is not None else {}

    def start(self) -> None:
        for i in range(self.count()):
            index = self.first_index + i
            proc = LocalProcess([self.ctx.python, *self.program_args(index)], self.log_path(index))
            proc.start(self.env(), self.ctx.foreground)
            self.processes.append(proc)

    def stop(self, timeout: float | None = None) -> None:
        self._refuse_other_host()
        stop_processes(self.processes, self.stop_timeout if timeout is None else timeout)

    def signal(self, sig: int) -> None:
        self._refuse_other_host()
        for proc in self.processes:
            proc.signal(sig)

    def _refuse_other_host(self) -> None:
        hosts = sorted({p.host for p in self.processes if not p.on_this_host})
        if hosts:
            raise OtherHostError(
                f"the {self.role} of this cluster run on {', '.join(hosts)}, not on {socket.gethostname()}: "
                "run this command there"
            )

    def poll(self) -> LauncherState:
        if not self.processes:
            return LauncherState.NOT_STARTED
        if not all(p.on_this_host for p in self.processes):
            return LauncherState.UNKNOWN  # a pid on another host cannot be checked from here
        return LauncherState.RUNNING if any(p.alive() for p in self.processes) else LauncherState.STOPPED

    @property
    def log_paths(self) -> list[Path]:
        return [p.log_path for p in self.processes]

    def state_dict(self) -> dict[str, Any]:
        return {"processes": [p.to_dict() for p in self.processes]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.processes = [LocalProcess.from_dict(d) for d in state.get("processes", [])]


class LocalControllerLauncher(ControllerLauncher, LocalLauncher):
    """The controller as a local process; its log is ``log/ipcontroller-<cluster>-<pid>.log``."""

    def count(self) -> int:
        return 1

    def log_path(self, index: int) -> Path:
        return self.ctx.log_dir / f"ipcontroller-{self.ctx.cluster_label}-starting-{os.getpid()}.log"

    def start(self) -> None:
        super().start()
        proc = self.processes[-1]
        final = self.ctx.log_dir / f"ipcontroller-{self.ctx.cluster_label}-{proc.pid}.log"
        os.replace(proc.log_path, final)  # the open file follows the rename
        proc.log_path = final

    @property
    def returncode(self) -> int | None:
        return self.processes[0].returncode if self.processes else None


class LocalEngineSetLauncher(EngineSetLauncher, LocalLauncher):
    """``n`` engines as local processes; logs ``log/ipengine-<cluster>-<index>.log``."""

    def log_path(self, index: int) -> Path:
        return self.ctx.log_dir / f"ipengine-{self.ctx.cluster_label}-{index}.log"


controller_launcher = LocalControllerLauncher
engine_launcher = LocalEngineSetLauncher
