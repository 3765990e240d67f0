"""Engines coming and going, shutdown, and the controller going away (each test owns its cluster)."""

from __future__ import annotations

import signal
import time

import pytest
from client_cluster import RunningCluster
from cluster_helpers import wait_for

import ipcluster as ipp


def sleep_then(x, delay):
    import time

    time.sleep(delay)
    return x


def test_engine_killed_mid_task_fails_with_engine_error(small_cluster):
    with small_cluster.client() as rc:
        victim_id = rc.ids[0]
        victim_pid = rc[victim_id].apply_sync(__import__("os").getpid)
        victim = next(p for p in small_cluster.engines if p.pid == victim_pid)
        ar = rc[victim_id].apply_async(sleep_then, 1, 30)
        queued = rc[victim_id].apply_async(lambda: 2)  # waits behind the sleep
        time.sleep(0.3)
        victim.send_signal(signal.SIGKILL)
        with pytest.raises(ipp.EngineError):
            ar.get(30)
        with pytest.raises(ipp.EngineError):
            queued.get(30)
        wait_for(lambda: victim_id not in rc.ids, 30)
        assert rc[:].apply_sync(lambda: 1) == [1]


def test_new_engines_show_up_in_ids(small_cluster):
    with small_cluster.client() as rc:
        n = len(rc.ids)
        small_cluster.add_engine()
        rc.wait_for_engines(n + 1, timeout=60)
        assert len(rc) == n + 1
        assert len(rc[:].apply_sync(lambda: 1)) == n + 1
        with pytest.raises(ipp.TimeoutError):
            rc.wait_for_engines(n + 5, timeout=0.2)


def test_shutdown_engines_and_hub(small_cluster):
    with small_cluster.client() as rc:
        first = rc.ids[0]
        first_pid = rc[first].apply_sync(__import__("os").getpid)
        rc.shutdown(targets=[first], block=True)
        wait_for(lambda: first not in rc.ids, 30)
        first_proc = next(p for p in small_cluster.engines if p.pid == first_pid)
        assert first_proc.wait(30) is not None, small_cluster.logs()
        rc.shutdown(hub=True, block=True)
        assert small_cluster.controller.wait(30) == 0
        for proc in small_cluster.engines:
            assert proc.wait(30) is not None, small_cluster.logs()
        with pytest.raises((ipp.EngineError, ipp.TimeoutError)):
            rc.queue_status()


def test_no_engines_registered(tmp_path):
    running = RunningCluster(tmp_path, n=0)
    try:
        with running.client(n=0) as rc:
            assert rc.ids == []
            with pytest.raises(ipp.NoEnginesRegistered):
                rc[:]
            with pytest.raises(ipp.NoEnginesRegistered):
                rc.direct_view().apply_async(lambda: 1)
            with pytest.raises(ipp.NoEnginesRegistered):
                rc.load_balanced_view().apply_async(lambda: 1)
    finally:
        running.stop()


@pytest.mark.xfail(
    reason="the engine sometimes exits 1 after answering shutdown_request (reported)", strict=False
)
def test_engine_exits_0_after_shutdown_request(small_cluster):
    with small_cluster.client() as rc:
        pid = rc[rc.ids[0]].apply_sync(__import__("os").getpid)
        rc.shutdown(targets=rc.ids[0], block=True)
        proc = next(p for p in small_cluster.engines if p.pid == pid)
        assert proc.wait(30) == 0, small_cluster.logs()


def test_an_engine_registers_without_waiting_for_the_next_ping(tmp_path):
    """The registration reply carries the current ping nonce and the heart pongs it at once: with a 60 s
    ping period an engine is still registered within seconds, not at the next ping."""
    running = RunningCluster(tmp_path, n=0, ping=60_000)
    try:
        with running.client(n=0) as rc:
            running.add_engine()
            rc.wait_for_engines(1, timeout=30)
            assert rc[:].apply_sync(lambda: 6 * 7) == [42]
    finally:
        running.stop()
