"""ipcluster.Cluster as ipyparallel documents it: a context manager, start_and_connect_sync, asyncio."""

from __future__ import annotations

from pathlib import Path

import pytest
from acceptance_cluster import cleanup, run_script


@pytest.fixture
def base(tmp_path: Path):
    yield tmp_path
    cleanup(tmp_path)


def _ok(base: Path, code: str) -> str:
    result = run_script(base, code, timeout=240)
    assert result.returncode == 0, f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    return result.stdout


def test_cluster_context_manager_and_start_and_connect(base):
    out = _ok(
        base,
        """
        import ipcluster as ipp

        with ipp.Cluster(n=2) as rc:
            assert isinstance(rc, ipp.Client)
            assert rc.ids == [0, 1] and rc[:].apply_sync(lambda: 1) == [1, 1]

        cluster = ipp.Cluster(n=2, profile="fresh")          # a new profile is created, as in ipyparallel
        rc = cluster.start_and_connect_sync()
        rc.wait_for_engines(2, timeout=60)
        assert len(rc) == 2
        rc.close()
        cluster.stop_cluster_sync()
        print("done")
        """,
    )
    assert out.strip() == "done"
    assert (base / "profile_fresh" / "ipcluster.toml").exists()


def test_cluster_under_asyncio(base):
    _ok(
        base,
        """
        import asyncio
        import ipcluster as ipp

        async def main():
            async with ipp.Cluster(n=1) as rc:
                return await rc[:].apply_async(lambda: "async")

        assert asyncio.run(main()) == ["async"]
        """,
    )


def test_engine_shutdown_request_exits_0_and_the_rest_keep_working(base):
    _ok(
        base,
        """
        import os
        import time
        import ipcluster as ipp

        with ipp.Cluster(n=2) as rc:
            pid = rc[0].apply_sync(os.getpid)
            rc.shutdown(targets=0, block=True)
            deadline = time.monotonic() + 30
            while 0 in rc.ids and time.monotonic() < deadline:
                time.sleep(0.05)
            assert rc.ids == [1]
            assert rc[:].apply_sync(lambda: 2) == [2]
        """,
    )
