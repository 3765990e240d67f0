"""Process helpers every launcher shares: identity checks that survive pid reuse, and polite-then-firm stops.

A pid alone is not an identity: after a reboot or a long uptime the pid of a dead engine may belong to
someone else. On Linux a process is identified by (pid, start time in clock ticks since boot); elsewhere we
fall back to the pid.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path

POLL_INTERVAL = 0.05


def proc_start_time(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot) on Linux, or None where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def pid_alive(pid: int | None, start_time: int | None = None) -> bool:
    """Whether ``pid`` runs and is the same process that started at ``start_time`` (when known)."""
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else: the start time below decides
    if _is_zombie(pid):
        return False
    if start_time is not None:
        now = proc_start_time(pid)
        if now is not None and now != start_time:
            return False
    return True


def signal_group(pgid: int, pid: int, start_time: int | None, sig: int) -> bool:
    """Send ``sig`` to the process group led by ``pid``; False when there is nobody left to signal.

    The group is skipped when its leader's pid now belongs to another process (pid reuse). A dead leader
    may leave orphans in its group (mpiexec's children), so the group is still signalled then.
    """
    if start_time is not None and reused(pid, start_time):
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return False


def reused(pid: int, start_time: int) -> bool:
    """Whether ``pid`` now belongs to a process other than the one that started at ``start_time``."""
    now = proc_start_time(pid)
    return now is not None and now != start_time


def group_alive(pgid: int) -> bool:
    """Whether any process is still in group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if Path("/proc").is_dir():
        return any(_pgid_of(p) == pgid and not _is_zombie(p) for p in _all_pids())
    return True


def _all_pids() -> Iterable[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _pgid_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, ValueError, IndexError):
        return None


def wait_until(predicate, timeout: float, interval: float = POLL_INTERVAL) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return bool(predicate())
        time.sleep(interval)


def parent_death_signal(sig: int = signal.SIGTERM):  # type: ignore[no-untyped-def]
    """A ``preexec_fn`` that makes Linux send ``sig`` to the child when the thread that started it dies.

    Used in foreground mode so killing ``ipcluster start`` (even with SIGKILL) takes the controller down.
    Returns None on other systems. Only call Popen with it from a thread that lives as long as the cluster.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(1, int(sig), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec
