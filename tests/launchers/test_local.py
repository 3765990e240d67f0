"""The local launcher's process semantics, with trivial children: groups, stop, kill, persistence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from ipcluster.launchers import LaunchContext, LauncherState
from ipcluster.launchers.local import LocalEngineSetLauncher, LocalLauncher
from ipcluster.launchers.process import pid_alive, proc_start_time, wait_until
from ipcluster.profiles.config import Config

SLEEPER = "import time; print('up', flush=True); time.sleep(120)"
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(120)"
# Starts a grandchild in the same process group and prints its pid.
FAMILY = (
    "import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']);"
    "print(p.pid, flush=True); time.sleep(120)"
)


class ScriptLauncher(LocalLauncher):
    """A local launcher whose processes run a snippet: the real process machinery, a trivial child."""

    role = "engines"
    code = SLEEPER

    def program_args(self, index: int = 0) -> list[str]:
        return ["-c", self.code]

    def log_path(self, index: int) -> Path:
        return self.ctx.log_dir / f"script-{index}.log"


def make(
    tmp_path: Path, code: str = SLEEPER, n: int = 1, stop_timeout: float = 5.0, **kw: Any
) -> ScriptLauncher:
    config = Config()
    config.cluster.stop_timeout = stop_timeout
    launcher = ScriptLauncher(LaunchContext(tmp_path, config=config, **kw), n=n)
    launcher.code = code
    return launcher


def printed(path: Path) -> str:
    wait_until(lambda: path.exists() and path.read_text().strip(), 20)
    return path.read_text().strip()


@pytest.fixture
def cleanup():
    started: list[LocalLauncher] = []
    yield started.append
    for launcher in started:
        launcher.stop(timeout=0.1)


def test_each_process_has_its_own_group_and_log(tmp_path: Path, cleanup) -> None:
    launcher = make(tmp_path, n=2)
    cleanup(launcher)
    launcher.start()
    assert launcher.poll() == LauncherState.RUNNING
    for proc in launcher.processes:
        assert os.getpgid(proc.pid) == proc.pid != os.getpgid(0)
    assert [printed(p) for p in launcher.log_paths] == ["up", "up"]
    assert launcher.engine_count == 2


def test_stop_terminates_politely(tmp_path: Path, cleanup) -> None:
    launcher = make(tmp_path, n=2)
    cleanup(launcher)
    launcher.start()
    t0 = time.monotonic()
    launcher.stop()
    assert time.monotonic() - t0 < 4
    assert launcher.poll() == LauncherState.STOPPED
    assert all(p.returncode == -signal.SIGTERM for p in launcher.processes)


def test_stop_kills_after_timeout_when_sigterm_is_ignored(tmp_path: Path, cleanup) -> None:
    launcher = make(tmp_path, STUBBORN, stop_timeout=0.5)
    cleanup(launcher)
    launcher.start()
    printed(launcher.log_paths[0])  # the handler is installed
    launcher.stop()
    assert launcher.processes[0].returncode == -signal.SIGKILL


def test_stop_reaches_grandchildren_in_the_group(tmp_path: Path, cleanup) -> None:
    launcher = make(tmp_path, FAMILY)
    cleanup(launcher)
    launcher.start()
    grandchild = int(printed(launcher.log_paths[0]))
    start = proc_start_time(grandchild)
    assert pid_alive(grandchild, start)
    launcher.stop()
    assert wait_until(lambda: not pid_alive(grandchild, start), 5)


def test_state_survives_to_dict_and_another_instance_stops_it(tmp_path: Path, cleanup) -> None:
    launcher = make(tmp_path, n=2)
    cleanup(launcher)
    launcher.start()
    data = launcher.to_dict()
    assert data["launcher"] == "local" and data["engine_count"] == 2
    assert [p["pid"] for p in data["state"]["processes"]] == [p.pid for p in launcher.processes]
    other = ScriptLauncher.from_dict(data, launcher.ctx)  # as `ipcluster stop` in another process would
    assert other.poll() == LauncherState.RUNNING
    other.stop()
    assert wait_until(lambda: launcher.poll() == LauncherState.STOPPED, 5)


def test_reused_pid_is_not_trusted(tmp_path: Path, cleanup) -> None:
    launcher = make(tmp_path)
    cleanup(launcher)
    launcher.start()
    data = launcher.to_dict()
    data["state"]["processes"][0]["start_time"] -= 1  # same pid, different process
    other = ScriptLauncher.from_dict(data, launcher.ctx)
    assert other.poll() == LauncherState.STOPPED
    other.stop(timeout=0.1)  # must not signal the process that now has this pid
    assert launcher.poll() == LauncherState.RUNNING


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_foreground_children_die_with_their_parent_even_on_sigkill(tmp_path: Path) -> None:
    parent_code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_local import make
        launcher = make(Path({str(tmp_path)!r}), foreground=True)
        launcher.start()
        print(launcher.processes[0].pid, launcher.processes[0].start_time, flush=True)
        time.sleep(120)
    """)
    parent = subprocess.Popen([sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True)
    try:
        pid, start = (int(x) for x in parent.stdout.readline().split())
        assert pid_alive(pid, start)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
    assert wait_until(lambda: not pid_alive(pid, start), 10)


def test_engine_command_line_carries_profile_cluster_and_changed_options(tmp_path: Path) -> None:
    config = Config()
    config.engine.timeout = 30.0
    config.engine.extra_args = ["--x"]
    launcher = LocalEngineSetLauncher(LaunchContext(tmp_path, "c1", config), n=1, extra_args=["--y"])
    args = launcher.program_args()
    assert args[:2] == ["-m", "ipcluster.engine"]
    assert args[2:6] == ["--profile-dir", str(tmp_path), "--cluster-id", "c1"]
    assert args[6:] == ["--timeout", "30.0", "--x", "--y"]  # defaults are left to the engine


def test_processes_of_another_host_are_unknown_and_not_signalled(tmp_path: Path, cleanup) -> None:
    from ipcluster.launchers.local import OtherHostError

    launcher = make(tmp_path)
    cleanup(launcher)
    launcher.start()
    data = launcher.to_dict()
    data["state"]["processes"][0]["host"] = "elsewhere.example"  # a profile on a shared filesystem
    other = ScriptLauncher.from_dict(data, launcher.ctx)
    assert other.poll() == LauncherState.UNKNOWN
    with pytest.raises(OtherHostError, match="run on elsewhere.example.*run this command there"):
        other.stop()
    assert launcher.poll() == LauncherState.RUNNING
