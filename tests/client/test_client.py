"""Client over a real cluster: ways to connect, lifetime, waiting, and the hub queries."""

from __future__ import annotations

import json
import threading
import time

import pytest

import ipcluster as ipp


def sleep_then(x, delay):

    time.sleep(delay)
    return x


def _io_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ipcluster-client-io"]


def test_connect_by_profile_dir_file_and_dict(cluster):
    before = len(_io_threads())
    info = json.loads(cluster.client_file.read_text())
    for kwargs in (
        {"profile_dir": str(cluster.profile_dir)},
        {"url_file": str(cluster.client_file)},
        {"url_or_file": str(cluster.client_file)},
        {"url_file": info},
        {"connection_info": info},
    ):
        with ipp.Client(**kwargs) as client:
            client.wait_for_engines(len(cluster.engines), timeout=30)
            assert client.ids
            assert client[:].apply_sync(lambda: 1) == [1] * len(client.ids)
    assert len(_io_threads()) == before  # close() joined the IO thread


def test_positional_connection_file_and_exec_key_warning(cluster):
    with pytest.warns(UserWarning, match="exec_key is ignored"):
        client = ipp.Client(str(cluster.client_file), exec_key="whatever")
    try:
        assert isinstance(client.ids, list)
    finally:
        client.close()
    client.close()  # closing twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        client[:].apply_async(lambda: 1)


def test_profile_name_via_ipcluster_dir(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("IPCLUSTER_DIR", str(cluster.profile_dir.parent))
    target = cluster.profile_dir.parent / "profile_named"
    if not target.exists():
        target.symlink_to(cluster.profile_dir)
    with ipp.Client(profile="named") as client:
        assert client.profile == "named"
        client.wait_for_engines(1, timeout=30)


def test_wait_for_jobs(rc):
    dv = rc[0]
    ar = dv.apply_async(sleep_then, 1, 0.5)
    assert rc.wait(ar, timeout=0.05) is False
    assert rc.wait([ar], timeout=30) is True
    ar2 = dv.apply_async(sleep_then, 2, 0.1)
    assert rc.wait(ar2.msg_id, timeout=30)
    assert rc.wait(-1, timeout=30)
    rc[:].apply_async(sleep_then, 3, 0.1)
    assert rc.wait(timeout=30) is True  # everything outstanding
    assert not rc.outstanding


def test_history_results_metadata_outstanding(rc):
    ar = rc[0].apply_async(sleep_then, "x", 0.3)
    assert ar.msg_id in rc.history
    assert ar.msg_id in rc.outstanding
    assert ar.msg_id not in rc.results
    ar.get(30)
    assert ar.msg_id not in rc.outstanding
    assert rc.results[ar.msg_id] == "x"
    assert rc.metadata[ar.msg_id]["status"] == "ok"


def test_queue_status(rc):
    status = rc.queue_status()
    assert set(rc.ids) <= set(status)
    assert "unassigned" in status
    for eid in rc.ids:
        assert set(status[eid]) >= {"queue", "completed", "tasks"}
    one = rc.queue_status(rc.ids[0])
    assert "completed" in one
    busy = rc[rc.ids[0]].apply_async(sleep_then, 0, 0.5)
    rc[rc.ids[0]].apply_async(sleep_then, 0, 0.0)
    verbose = rc.queue_status(rc.ids[0], verbose=True)
    assert isinstance(verbose["queue"], list)
    busy.get(30)
    rc.wait(timeout=30)


def test_result_status_and_get_result(rc):
    ar = rc[0].apply_async(sleep_then, 5, 0.0)
    ar.get(30)
    status = rc.result_status(ar.msg_ids)
    assert status["completed"] == ar.msg_ids and status["pending"] == []
    full = rc.result_status(ar.msg_ids, status_only=False)
    assert full[ar.msg_id] == 5
    again = rc.get_result(ar.msg_id)
    assert again.get(30) == 5


def test_result_from_another_client_via_the_hub(rc, cluster):
    ar = rc[0].apply_async(sleep_then, "shared", 0.0)
    ar.get(30)
    with cluster.client() as other:
        status = other.result_status([ar.msg_id], status_only=False)
        assert status[ar.msg_id] == "shared"
        fetched = other.get_result(ar.msg_id)
        assert fetched.get(30) == "shared"


def test_hub_history_and_purge(rc):
    ar = rc[0].apply_async(sleep_then, 1, 0.0)
    ar.get(30)
    assert ar.msg_id in rc.hub_history()
    rc.purge_results(jobs=[ar])
    assert ar.msg_id not in rc.results
    with pytest.raises(ValueError, match="at least one"):
        rc.purge_results()
    pending = rc[0].apply_async(sleep_then, 1, 0.5)
    with pytest.raises(RuntimeError, match="still running"):
        rc.purge_results(jobs=[pending])
    pending.get(30)
    rc.purge_results("all")
    assert len(rc.results) == 0


def test_clear_empties_namespace(rc):
    dv = rc[:]
    dv["to_clear"] = 1
    rc.clear(block=True)
    with pytest.raises(ipp.CompositeError):
        dv.pull("to_clear", block=True)


def mark_then_sleep(path, delay):
    import pathlib
    import time

    pathlib.Path(path).touch()
    time.sleep(delay)
    return 1


def test_abort_all_queued(rc, tmp_path):
    target = rc[rc.ids[0]]
    started = tmp_path / "blocker-started"
    blocker = target.apply_async(mark_then_sleep, str(started), 2.0)
    deadline = time.monotonic() + 30
    while not started.exists():  # abort must not overtake the blocker before it runs
        assert time.monotonic() < deadline, "the blocking task never started"
        blocker.wait(0.01)
    queued = [target.apply_async(lambda: 1) for _ in range(3)]
    rc.abort(targets=rc.ids[0], block=True)
    for ar in queued:
        with pytest.raises(ipp.TaskAborted):
            ar.get(30)
    assert blocker.get(30) == 1


def test_spin_and_repr(rc):
    rc.spin()
    assert "engines" in repr(rc)
    assert repr(rc[:]).startswith("<DirectView")


def test_many_threads_share_one_client(rc):
    results = []

    def worker(n):
        results.append(sum(rc[:].map_sync(lambda x: x, range(n))))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(10, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == sorted(sum(range(n)) for n in range(10, 20))


def test_many_tiny_tasks(rc):
    lv = rc.load_balanced_view()
    ars = [lv.apply_async(abs, -i) for i in range(2000)]
    assert rc.wait(ars, timeout=120)
    assert [ar.get() for ar in ars] == list(range(2000))
    assert lv.map_sync(abs, range(-1000, 0)) == list(range(1000, 0, -1))


def test_close_fails_pending_results(cluster):
    client = cluster.client()
    ar = client[0].apply_async(sleep_then, 1, 2.0)
    client.close()
    with pytest.raises(ipp.EngineError, match="closed"):
        ar.get(5)


def test_unknown_arguments_warn(cluster):
    with pytest.warns(UserWarning, match="unknown arguments: bogus"):
        client = ipp.Client(str(cluster.client_file), bogus=1)
    client.close()


def test_executor_and_nonblocking_wait_for_engines(rc):
    future = rc.wait_for_engines(len(rc), block=False)
    assert future.result(30) is None
    ex = rc.executor()
    assert ex.submit(pow, 3, 3).result(30) == 27
