"""A real cluster started the way a new user starts one, and user programs run as ``python script.py``.

``UserCluster(base, n)`` runs ``ipcluster start -n N --daemonize`` with ``IPCLUSTER_DIR=base``; ``run(code)``
writes ``code`` to a script and runs it with the same environment (so its functions live in ``__main__``,
as in a user's script), returning the finished process; ``stop()`` runs ``ipcluster stop --all`` and then
removes whatever a failed test left behind, so no process outlives the module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PYTHON = sys.executable


def user_env(base: Path) -> dict[str, str]:
    env = {**os.environ, "IPCLUSTER_DIR": str(base)}
    for key in [k for k in env if k.startswith("IPCLUSTER_") and k != "IPCLUSTER_DIR"]:
        del env[key]  # only what a user's shell would have
    return env


def ipcluster(base: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``ipcluster ARGS`` (as ``python -m ipcluster``, the same command) in ``base``."""
    return subprocess.run(
        [PYTHON, "-m", "ipcluster", *args],
        env=user_env(base),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_script(
    base: Path, code: str, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    script = base / f"user_script_{time.monotonic_ns()}.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [PYTHON, str(script)],
        env=user_env(base),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(cwd or base),
        stdin=subprocess.DEVNULL,
    )


def cleanup(base: Path) -> None:
    """Stop every cluster recorded under ``base`` (the safety net after ``ipcluster stop --all``)."""
    from ipcluster.launchers.records import clean_record
    from ipcluster.profiles.config import Config
    from ipcluster.profiles.dirs import list_profiles
    from ipcluster.profiles.registry import list_records

    for prof in list_profiles(base):
        for record in list_records(prof):
            clean_record(prof, record, Config())


class UserCluster:
    def __init__(self, base: Path, n: int = 3, *start_args: str) -> None:
        self.base = base
        self.n = n
        result = ipcluster(base, "start", "-n", str(n), "--daemonize", "--timeout", "90", *start_args)
        if result.returncode != 0:
            cleanup(base)
            raise RuntimeError(
                f"ipcluster start failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )

    def run(self, code: str, timeout: float = 120) -> str:
        """Run a user program; AssertionError with its output unless it exits 0. Returns its stdout."""
        result = run_script(self.base, code, timeout)
        assert result.returncode == 0, (
            f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
        return result.stdout

    def stop(self) -> None:
        try:
            ipcluster(self.base, "stop", "--all", timeout=60)
        finally:
            cleanup(self.base)


def module_cluster(tmp_path_factory: Any, n: int = 3) -> Iterator[UserCluster]:
    """Body of each module's ``cluster`` fixture: one real cluster per module, always stopped."""
    running = UserCluster(tmp_path_factory.mktemp("ipcluster_home"), n)
    try:
        yield running
    finally:
        running.stop()
