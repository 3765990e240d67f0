"""The mpi launcher's command line (the real mpiexec run is in tests/cli/test_start_stop.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from ipcluster.launchers import LaunchContext
from ipcluster.launchers.mpi import MPIControllerLauncher, MPIEngineSetLauncher
from ipcluster.profiles.config import Config


def test_engines_run_under_one_mpiexec(tmp_path: Path) -> None:
    config = Config()
    config.launcher("mpi").args = ["--oversubscribe"]
    launcher = MPIEngineSetLauncher(LaunchContext(tmp_path, "c", config), n=3)
    argv = launcher.mpi_argv()
    assert argv[:5] == ["mpiexec", "-n", "3", "--oversubscribe", sys.executable]
    assert argv[5:9] == ["-m", "ipcluster.engine", "--profile-dir", str(tmp_path)]
    assert launcher.engine_count == 3


def test_env_setup_runs_first_in_a_shell(tmp_path: Path) -> None:
    config = Config()
    config.launcher("mpi").env_setup = "module load openmpi"
    config.launcher("mpi").mpiexec = "srun --mpi=pmix"
    argv = MPIEngineSetLauncher(LaunchContext(tmp_path, "", config), n=2).mpi_argv()
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[2].startswith("module load openmpi\nexec srun --mpi=pmix -n 2 ")


def test_controller_is_a_single_process(tmp_path: Path) -> None:
    launcher = MPIControllerLauncher(LaunchContext(tmp_path), n=5)
    assert launcher.mpi_argv()[:3] == ["mpiexec", "-n", "1"]
    assert launcher.engine_count == 0
