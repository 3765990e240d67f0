"""Run ``python -m ipcluster`` as a user would, in a private IPCLUSTER_DIR, and leave no process behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ipcluster.cluster import clean_record
from ipcluster.launchers.process import pid_alive
from ipcluster.profiles.config import Config
from ipcluster.profiles.dirs import list_profiles
from ipcluster.profiles.registry import list_records


@dataclass
class IPCluster:
    base: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ipcluster", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "wb")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "ipcluster", *args], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        finally:
            out.close()

    @property
    def profile(self) -> Path:
        return self.base / "profile_default"

    def record(self, cluster_id: str = "", profile: str = "default") -> dict[str, Any]:
        return json.loads(
            (self.base / f"profile_{profile}" / "clusters" / f"{cluster_id or 'default'}.json").read_text()
        )

    def clusters(self) -> list[dict[str, Any]]:
        return json.loads(self.run("list", "--json").stdout)


def pids_of(record: dict[str, Any]) -> list[tuple[int, int | None]]:
    """(pid, start time) of every process a registry record names."""
    out = []
    for launcher in [record["controller"], *record["engines"]]:
        for proc in launcher["state"].get("processes", []):
            out.append((proc["pid"], proc["start_time"]))
    return out


def all_gone(pids: list[tuple[int, int | None]], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(pid_alive(p, s) for p, s in pids):
            return True
        time.sleep(0.05)
    return False


def wait_for_text(path: Path, text: str, timeout: float = 60, proc: subprocess.Popen | None = None) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before printing {text!r}:\n{content}")
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not printed within {timeout} s:\n{content}")


@pytest.fixture
def ipc(tmp_path: Path) -> Iterator[IPCluster]:
    base = tmp_path / "ipc"
    env = {**os.environ, "IPCLUSTER_DIR": str(base)}
    env = {k: v for k, v in env.items() if not (k.startswith("IPCLUSTER_") and k != "IPCLUSTER_DIR")}
    yield IPCluster(base, env)
    for prof in list_profiles(base):  # kill whatever a failed test left, from the registry
        for record in list_records(prof):
            clean_record(prof, record, Config())
