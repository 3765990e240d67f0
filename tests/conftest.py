"""Suite-wide safety: no test reads or writes the user's real profiles, and no test leaves a process behind."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

_SUITE_DIR = Path(tempfile.mkdtemp(prefix="ipcluster-tests-"))
os.environ["IPCLUSTER_DIR"] = str(_SUITE_DIR / "profiles")
# Shared-memory buffers and engine probes of the suite's clusters go here, not to the machine's /dev/shm.
_SHM_DIR = _SUITE_DIR / "shm"
_SHM_DIR.mkdir()
os.environ["IPCLUSTER_SHM_DIR"] = str(_SHM_DIR)


def _our_children() -> set[int]:
    """Descendants of this pytest process (from /proc), to spot processes a test forgot to stop."""
    me = os.getpid()
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        parents[int(entry.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {me}
    while frontier:
        nxt = {pid for pid, ppid in parents.items() if ppid in frontier and pid not in found}
        found |= nxt
        frontier = nxt
    return found


@pytest.fixture(autouse=True, scope="session")
def _no_leftover_processes() -> Iterator[None]:
    before = _our_children()
    yield
    if not Path("/proc").is_dir():
        return
    left = _our_children() - before
    names = []
    for pid in sorted(left):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            names.append(f"{pid}: {cmdline[:120]}")
        except OSError:
            continue
    assert not names, "processes left behind by the tests:\n" + "\n".join(names)


@pytest.fixture(autouse=True, scope="session")
def _no_leftover_shared_memory() -> Iterator[None]:
    started = time.time()
    yield
    # Engines started through the test sshd do not inherit IPCLUSTER_SHM_DIR: probes that those killed in
    # tests left in the machine's directory are removed (only files of dead processes made by this run).
    from ipcluster.wire.shm import stale_files

    machine_dir = Path("/dev/shm")
    for path in stale_files(machine_dir) if machine_dir.is_dir() else []:
        try:
            if path.stat().st_mtime >= started:
                path.unlink()
        except OSError:
            pass
    buffers = sorted(p.name for p in _SHM_DIR.glob("ipcluster-buf-*"))
    assert not buffers, f"shared-memory buffers left behind by the tests: {buffers}"
