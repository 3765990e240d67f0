"""The MPI launcher: ``mpiexec -n N python -m ipcluster.engine ...`` as one local process group.

The engines then share an MPI communicator (mpi4py works in them). ``[launcher.mpi]`` sets the mpiexec
command, extra arguments (``--oversubscribe``, ``--hostfile``) and shell lines to run first.

``-n N`` is an explicit request for N engines, so Open MPI is told to allow more ranks than cores, and to
run as root when we are root (containers): without that it refuses both. Set those variables yourself to
override; other MPI implementations ignore them.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from .base import ControllerLauncher, EngineSetLauncher
from .local import LocalLauncher, LocalProcess


class MPILauncher(LocalLauncher):
    """One ``mpiexec`` process starting all ``n`` copies; stopping its group stops them all."""

    name = "mpi"

    def mpi_argv(self) -> list[str]:
        section = self.ctx.config.launcher("mpi")
        inner = [self.ctx.python, *self.program_args(self.first_index)]
        argv = [*shlex.split(section.mpiexec), "-n", str(self.n), *section.args, *inner]
        if section.env_setup:
            return ["/bin/sh", "-c", f"{section.env_setup}\nexec {shlex.join(argv)}"]
        return argv

    def env(self) -> dict[str, str]:
        env = super().env()
        wanted = {"OMPI_MCA_rmaps_base_oversubscribe": "1"}
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            wanted.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        for key, value in wanted.items():
            if key not in os.environ:
                env.setdefault(key, value)
        return env

    def start(self) -> None:
        proc = LocalProcess(self.mpi_argv(), self.log_path(self.first_index))
        proc.start(self.env(), self.ctx.foreground)
        self.processes.append(proc)

    def state_dict(self) -> dict[str, Any]:
        return {"processes": [p.to_dict() for p in self.processes]}


class MPIEngineSetLauncher(EngineSetLauncher, MPILauncher):
    def log_path(self, index: int) -> Path:
        return self.ctx.log_dir / f"ipengine-{self.ctx.cluster_label}-mpi-{index}.log"


class MPIControllerLauncher(ControllerLauncher, MPILauncher):
    """The controller under ``mpiexec -n 1`` (for sites where only MPI may start processes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.n = 1

    def log_path(self, index: int) -> Path:
        return self.ctx.log_dir / f"ipcontroller-{self.ctx.cluster_label}-mpi.log"


controller_launcher = MPIControllerLauncher
engine_launcher = MPIEngineSetLauncher
