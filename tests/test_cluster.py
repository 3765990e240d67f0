"""The Python API: ipcluster.Cluster in scripts, under asyncio, and re-attached from another object."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import ipcluster
from ipcluster.cluster import Cluster, ClusterAlreadyRunning, ClusterManager, ClusterNotRunning, clean_record
from ipcluster.launchers.process import pid_alive
from ipcluster.profiles.config import Config
from ipcluster.profiles.dirs import list_profiles
from ipcluster.profiles.registry import list_records


@pytest.fixture(autouse=True)
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("IPCLUSTER_DIR", str(tmp_path))
    yield tmp_path
    for prof in list_profiles(tmp_path):  # whatever a failed test left behind
        for record in list_records(prof):
            clean_record(prof, record, Config())


def processes(cluster: Cluster) -> list[tuple[int, int | None]]:
    launchers = [cluster.controller, *cluster.engine_sets]
    return [(p.pid, p.start_time) for ls in launchers if ls is not None for p in ls.processes]


def gone(pids: list[tuple[int, int | None]], timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while any(pid_alive(p, s) for p, s in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_start_wait_stop(base: Path) -> None:
    cluster = ipcluster.Cluster(n=2)
    cluster.start()
    try:
        assert cluster.wait_for_engines(timeout=60) == 2
        assert cluster.registered_engines() == 2
        assert (base / "profile_default" / "clusters" / "default.json").exists()
        pids = processes(cluster)
        with pytest.raises(ClusterAlreadyRunning):
            Cluster(n=1).start_controller_sync()
    finally:
        cluster.stop()
    assert gone(pids)
    assert not (base / "profile_default" / "clusters" / "default.json").exists()


def test_from_file_reattaches_and_adds_engines(base: Path) -> None:
    first = Cluster(n=1, cluster_id="c1", shutdown_atexit=False)
    first.start_cluster_sync()
    try:
        first.wait_for_engines_sync(timeout=60)
        other = Cluster.from_file(profile="default", cluster_id="c1")
        assert other.engine_count == 1 and other.controller.running
        other.start_engines_sync(1)
        assert other.wait_for_engines_sync(timeout=60) == 2
        path = base / "profile_default" / "clusters" / "c1.json"
        again = Cluster.from_file(path)
        assert again.engine_count == 2
        pids = processes(again)
        assert len(pids) == 3
        again.stop_cluster_sync()  # stops the engines the first object started too
        assert gone(pids)
    finally:
        first.stop_cluster_sync()
    with pytest.raises(ClusterNotRunning, match="no cluster 'c1' is running in profile 'default'"):
        Cluster.from_file(profile="default", cluster_id="c1")


def test_cluster_manager_lists_running_clusters() -> None:
    cluster = Cluster(n=0, cluster_id="m")
    cluster.start_cluster_sync()
    try:
        assert ClusterManager().list_clusters() == ["default:m"]
        assert ClusterManager(profile="default").get_cluster("default:m").cluster_id == "m"
    finally:
        cluster.stop_cluster_sync()
    assert ClusterManager().list_clusters() == []


def test_context_manager_yields_a_connected_client() -> None:
    with ipcluster.Cluster(n=2) as rc:
        assert isinstance(rc, ipcluster.Client)
        assert sorted(rc.ids) == [0, 1]
        assert rc[:].apply_sync(os.getpid) != [os.getpid()] * 2
    assert ClusterManager().list_clusters() == []


def test_async_api() -> None:
    async def main() -> list[int]:
        cluster = Cluster(n=1)
        await cluster.start()
        try:
            await cluster.wait_for_engines(timeout=60)
            return [cluster.registered_engines() or 0]
        finally:
            await cluster.stop_cluster()

    assert asyncio.run(main()) == [1]


def test_async_context_manager() -> None:
    async def main() -> list[int]:
        async with Cluster(n=1) as rc:
            return list(rc.ids)

    assert asyncio.run(main()) == [0]


def test_interpreter_exit_stops_the_cluster(base: Path) -> None:
    code = textwrap.dedent("""
        import ipcluster
        c = ipcluster.Cluster(n=1)
        c.start_cluster_sync()
        c.wait_for_engines_sync(timeout=60)
        print(*[p.pid for ls in [c.controller, *c.engine_sets] for p in ls.processes], flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90,
                         env={**os.environ, "IPCLUSTER_DIR": str(base)})  # fmt: skip
    assert out.returncode == 0, out.stderr
    pids = [(int(p), None) for p in out.stdout.split()]
    assert len(pids) == 2 and gone(pids)
    assert list_records(list_profiles(base)[0]) == []
