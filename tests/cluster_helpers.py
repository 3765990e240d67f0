"""Start and stop real ipcluster processes from tests.

``start_controller(profile_dir, *args) -> Popen`` runs ``python -m ipcluster.controller --profile-dir
<profile_dir> *args`` and returns once its client connection file exists (written by that process). The
controller's stderr goes to ``proc.stderr_path`` (a file in the profile's log dir), so a chatty controller
never blocks on a full pipe; ``read_stderr(proc)`` returns it. If the controller exits before it is ready,
RuntimeError carries the tail of its stderr. ``proc.client_file`` / ``proc.engine_file`` are the
connection files' paths.

``stop_process(proc)`` sends SIGTERM, waits, then SIGKILLs; safe to call twice or on a process that
already exited. Always call it (try/finally or a fixture) so no daemon is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["start_controller", "stop_process", "read_stderr", "wait_for"]


def read_stderr(proc: subprocess.Popen) -> str:
    path = getattr(proc, "stderr_path", None)
    if path is None:
        return ""
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll ``predicate()`` until it returns something truthy (returned); AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _ready_file(security: Path, pid: int) -> Path | None:
    for path in sorted(security.glob("ipcontroller*-client.json")) if security.is_dir() else []:
        try:
            if json.loads(path.read_text()).get("controller_pid") == pid:
                return path
        except (OSError, ValueError):
            continue
    return None


def start_controller(
    profile_dir: Path | str, *args: str, timeout: float = 30.0, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start a controller on ``profile_dir`` and wait until its client connection file exists."""
    profile_dir = Path(profile_dir)
    log_dir = profile_dir / "log"
    log_dir.mkdir(parents=True, exist_ok=True)
    stderr_path = log_dir / f"ipcontroller-test-{time.monotonic_ns()}.log"
    cmd = [sys.executable, "-m", "ipcluster.controller", "--profile-dir", str(profile_dir), *args]
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, **(env or {})},
        )
    proc.stderr_path = stderr_path  # type: ignore[attr-defined]
    security = profile_dir / "security"
    deadline = time.monotonic() + timeout
    while True:
        found = _ready_file(security, proc.pid)
        if found is not None:
            proc.client_file = found  # type: ignore[attr-defined]
            proc.engine_file = found.with_name(found.name.replace("-client.json", "-engine.json"))  # type: ignore[attr-defined]
            return proc
        if proc.poll() is not None:
            tail = "\n".join(read_stderr(proc).splitlines()[-20:])
            raise RuntimeError(
                f"ipcontroller exited with status {proc.returncode} before it was ready:\n{tail}"
            )
        if time.monotonic() > deadline:
            stop_process(proc)
            tail = "\n".join(read_stderr(proc).splitlines()[-20:])
            raise RuntimeError(f"ipcontroller was not ready after {timeout} s:\n{tail}")
        time.sleep(0.02)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL; returns the exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
    return proc.returncode
