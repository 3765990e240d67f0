"""The shared core of batch-system launchers (Slurm, SGE, PBS, LSF, HTCondor, Windows HPC).

A scheduler module only states what differs: its submit, cancel and status commands, its directive prefix,
how the ``[launcher.<name>]`` options become directives, and (optionally) its own script template. Writing
the job script, submitting it, remembering the job ids in the registry, cancelling and polling, and the
``job_script()`` preview all live here. A new scheduler is therefore one short module, e.g.::

    class SlurmEngineSetLauncher(BatchEngineSetLauncher):
        name = "slurm"
        submit_command = ["sbatch"]
        cancel_command = ["scancel"]
        status_command = ["squeue", "-h", "-j"]
        directive_prefix = "#SBATCH"

        def resource_directives(self, cfg, n):
            return [f"--ntasks={n}", f"--time={cfg.walltime}"] + ([f"--partition={cfg.queue}"] if cfg.queue else [])

    engine_launcher = SlurmEngineSetLauncher
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from ipcluster.error import IPClusterError

from .base import ControllerLauncher, EngineSetLauncher, Launcher, LauncherState

DEFAULT_TEMPLATE = """#!/bin/sh
{directives}
{env_setup}
{body}
"""


class BatchLauncher(Launcher):
    """Submits jobs whose script runs ``program_args`` ``n`` times, in the background, then waits."""

    submit_command: ClassVar[list[str]] = []
    cancel_command: ClassVar[list[str]] = []
    status_command: ClassVar[list[str] | None] = (
        None  # + job id; exit 0 with output means still queued/running
    )
    directive_prefix: ClassVar[str] = "#"
    job_id_pattern: ClassVar[str] = r"(\d+(?:\.\S+)?)"
    script_template: ClassVar[str] = DEFAULT_TEMPLATE
    submit_via_stdin: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job_ids: list[str] = []
        self.scripts: list[Path] = []

    @property
    def section(self) -> Any:
        return self.ctx.config.launcher(self.name)

    def resource_directives(self, cfg: Any, n: int) -> list[str]:
        """Directives (without the prefix) for a job of ``n`` processes; the scheduler module's main job."""
        return []

    def job_sizes(self) -> list[int]:
        per_job = getattr(self.section, "engines_per_job", 0) or self.n
        sizes = [per_job] * (self.n // per_job)
        if self.n % per_job:
            sizes.append(self.n % per_job)
        return sizes or [1]

    def job_script(self, n: int | None = None) -> str:
        """The script that would be submitted for ``n`` processes (a preview; nothing is submitted)."""
        n = self.job_sizes()[0] if n is None else n
        cfg = self.section
        lines = self.resource_directives(cfg, n) + list(getattr(cfg, "extra_directives", []))
        directives = "\n".join(f"{self.directive_prefix} {d}" for d in lines)
        command = shlex.join([self.ctx.python, *self.program_args(self.first_index)])
        body = command if n == 1 else f"for i in $(seq {n}); do\n  {command} &\ndone\nwait"
        return self.script_template.format(
            directives=directives, env_setup=getattr(cfg, "env_setup", ""), body=body, n=n, command=command
        )

    def submit(self, script: Path) -> str:
        argv = [*self.submit_command, *getattr(self.section, "submit_args", [])]
        if not self.submit_via_stdin:
            argv.append(str(script))
        try:
            out = subprocess.run(
                argv, input=script.read_text() if self.submit_via_stdin else None,
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
        except FileNotFoundError:
            raise IPClusterError(f"{argv[0]} not found: is {self.name} installed and on PATH on this host?")
        if out.returncode != 0:
            raise IPClusterError(
                f"{shlex.join(argv)} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}"
            )
        match = re.search(self.job_id_pattern, out.stdout)
        if not match:
            raise IPClusterError(f"{shlex.join(argv)} printed no job id: {out.stdout.strip()!r}")
        return match.group(1)

    def start(self) -> None:
        self.ctx.log_dir.mkdir(parents=True, exist_ok=True)
        for i, size in enumerate(self.job_sizes()):
            script = (
                self.ctx.log_dir
                / f"{self.name}-{self.role}-{self.ctx.cluster_label}-{self.first_index + i}.sh"
            )
            script.write_text(self.job_script(size))
            self.scripts.append(script)
            self.job_ids.append(self.submit(script))

    def stop(self, timeout: float | None = None) -> None:
        if self.job_ids:
            subprocess.run(
                [*self.cancel_command, *self.job_ids], capture_output=True, timeout=60, check=False
            )

    def signal(self, sig: int) -> None:
        """Batch jobs are only cancelled; other signals are not forwarded."""

    def poll(self) -> LauncherState:
        if not self.job_ids:
            return LauncherState.NOT_STARTED
        if self.status_command is None:
            return LauncherState.UNKNOWN
        for job in self.job_ids:
            try:
                out = subprocess.run(
                    [*self.status_command, job], capture_output=True, text=True, timeout=30, check=False
                )
            except (OSError, subprocess.TimeoutExpired):
                return LauncherState.UNKNOWN
            if out.returncode == 0 and out.stdout.strip():
                return LauncherState.RUNNING
        return LauncherState.STOPPED

    @property
    def log_paths(self) -> list[Path]:
        return list(self.scripts)

    def state_dict(self) -> dict[str, Any]:
        return {"job_ids": self.job_ids, "scripts": [str(s) for s in self.scripts]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.job_ids = list(state.get("job_ids", []))
        self.scripts = [Path(s) for s in state.get("scripts", [])]


class BatchEngineSetLauncher(EngineSetLauncher, BatchLauncher):
    """Engines as batch jobs (``[launcher.<name>] engines_per_job`` splits them into several jobs)."""


class BatchControllerLauncher(ControllerLauncher, BatchLauncher):
    """The controller as a one-process batch job."""

    def job_sizes(self) -> list[int]:
        return [1]
