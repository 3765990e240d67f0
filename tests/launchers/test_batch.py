"""The batch-launcher core, driven through a tiny fake scheduler made of shell scripts (real processes)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from ipcluster.error import IPClusterError
from ipcluster.launchers import BatchEngineSetLauncher, LaunchContext, LauncherState
from ipcluster.launchers.process import pid_alive, wait_until
from ipcluster.profiles.config import Config

SUBMIT = """#!/bin/sh
setsid sh "$1" > "$1.out" 2>&1 < /dev/null &
echo "Submitted batch job $!"
"""
CANCEL = f"""#!{sys.executable}
import os, signal, sys
for job in sys.argv[1:]:
    os.killpg(int(job), signal.SIGTERM)
"""
STATUS = f"""#!{sys.executable}
import sys
from ipcluster.launchers.process import pid_alive
if pid_alive(int(sys.argv[1])):
    print(sys.argv[1], "R")
"""


class FakeSlurm(BatchEngineSetLauncher):
    """What a real scheduler module looks like: commands, a prefix and a directive mapping."""

    name = "slurm"
    directive_prefix = "#SBATCH"

    def resource_directives(self, cfg, n: int) -> list[str]:
        out = [f"--ntasks={n}", f"--time={cfg.walltime}", f"--job-name={cfg.job_name}"]
        return out + ([f"--partition={cfg.queue}"] if cfg.queue else [])

    def program_args(self, index: int = 0) -> list[str]:
        return ["-c", "import time; time.sleep(120)"]


@pytest.fixture
def launcher(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("submit", SUBMIT), ("cancel", CANCEL), ("status", STATUS)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    config = Config()
    config.launcher("slurm").queue = "debug"
    config.launcher("slurm").extra_directives = ["--exclusive"]
    cls = type("Fake", (FakeSlurm,), {
        "submit_command": [str(bin_dir / "submit")],
        "cancel_command": [str(bin_dir / "cancel")],
        "status_command": [str(bin_dir / "status")],
    })  # fmt: skip
    made = cls(LaunchContext(tmp_path / "profile", "c1", config), n=2)
    yield made
    made.stop()


def test_job_script_preview(launcher) -> None:
    script = launcher.job_script()
    assert script.startswith("#!/bin/sh\n#SBATCH --ntasks=2\n#SBATCH --time=01:00:00")
    assert "#SBATCH --partition=debug\n#SBATCH --exclusive" in script
    assert "for i in $(seq 2); do" in script and "time.sleep(120)" in script


def test_submit_poll_persist_cancel(launcher) -> None:
    assert launcher.poll() == LauncherState.NOT_STARTED
    launcher.start()
    [job] = launcher.job_ids
    assert launcher.poll() == LauncherState.RUNNING
    assert launcher.engine_count == 2
    assert launcher.log_paths[0].read_text() == launcher.job_script(2)
    data = launcher.to_dict()
    assert data["state"]["job_ids"] == [job]
    again = type(launcher).from_dict(data, launcher.ctx)  # what `ipcluster stop` would rebuild
    again.stop()
    assert wait_until(lambda: again.poll() == LauncherState.STOPPED, 10)
    assert not pid_alive(int(job))


def test_engines_per_job_splits_jobs(launcher) -> None:
    launcher.ctx.config.launcher("slurm").engines_per_job = 1
    launcher.start()
    assert len(launcher.job_ids) == 2


def test_submit_failure_is_one_clear_line(launcher, tmp_path: Path) -> None:
    launcher.submit_command = [str(tmp_path / "no-such-sbatch")]
    with pytest.raises(IPClusterError, match="not found: is slurm installed and on PATH"):
        launcher.start()
    launcher.submit_command = ["sh", "-c", "echo queue full >&2; exit 1", "submit"]
    with pytest.raises(IPClusterError, match="failed \\(1\\): queue full"):
        launcher.start()


def test_signals_other_than_cancel_are_not_forwarded(launcher) -> None:
    launcher.start()
    launcher.signal(signal.SIGINT)
    assert launcher.poll() == LauncherState.RUNNING
