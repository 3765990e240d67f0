"""AsyncResult over a real cluster: waiting, metadata, timings, outputs, futures and asyncio."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime

import pytest

import ipcluster as ipp


def sleep_then(x, delay):
    import time

    time.sleep(delay)
    return x


def chatty(x):
    import sys

    print(f"out {x}")
    print(f"err {x}", file=sys.stderr)
    return x


def test_get_timeout_wait_ready_successful(rc):
    ar = rc[0].apply_async(sleep_then, "done", 2.0)
    assert not ar.ready()
    with pytest.raises(ipp.TimeoutError, match="not ready"):
        ar.get(timeout=0.05)
    with pytest.raises(TimeoutError):  # also the builtin, for plain-Python callers
        ar.get(0.01)
    with pytest.raises(AssertionError):
        ar.successful()
    assert ar.wait(0.01) is False
    assert ar.wait(30) is True
    assert ar.ready() and ar.successful()
    assert ar.get() == "done"
    assert ar.result() == "done"
    bad = rc[0].apply_async(lambda: 1 / 0)
    bad.wait(30)
    assert not bad.successful()
    assert isinstance(bad.exception(), ipp.RemoteError)


def test_metadata_and_timings(rc):
    ar = rc[0].apply_async(sleep_then, 1, 0.2)
    ar.get(30)
    md = ar.metadata
    assert md["engine_id"] == rc.ids[0] and md.engine_id == rc.ids[0]
    assert md["status"] == "ok"
    for key in ("submitted", "started", "completed", "received"):
        assert isinstance(md[key], datetime.datetime), key
    assert md["submitted"] <= md["started"] <= md["completed"] <= md["received"]
    assert ar.serial_time >= 0.19
    assert ar.wall_time >= ar.serial_time
    assert ar.elapsed == ar.wall_time
    assert ar.msg_ids == [ar.msg_id]
    assert ar.engine_id == rc.ids[0]  # metadata keys read as attributes
    multi = rc[:].apply_async(sleep_then, 1, 0.1)
    multi.get(30)
    assert [m["engine_id"] for m in multi.metadata] == rc.ids
    assert multi.serial_time >= 0.1 * len(rc) - 0.01
    assert multi["engine_id"] == rc.ids


def test_elapsed_grows_while_pending(rc):
    ar = rc[0].apply_async(sleep_then, 1, 0.5)
    first = ar.elapsed
    ar.wait(0.2)
    assert ar.elapsed > first
    ar.get(30)


def test_stdout_stderr_and_display_outputs(rc, capsys):
    ar = rc[:].apply_async(chatty, 7)
    ar.get(30)
    assert ar.stdout == ["out 7\n"] * len(rc)
    assert ar.stderr == ["err 7\n"] * len(rc)
    ar.display_outputs()
    captured = capsys.readouterr()
    for eid in rc.ids:
        assert f"[stdout:{eid}] out 7" in captured.out
        assert f"[stderr:{eid}] err 7" in captured.err
    single = rc[0].apply_async(chatty, 8)
    single.get(30)
    assert single.metadata.stdout == "out 8\n"


def test_output_of_many_lines_is_complete(rc):
    def many_lines(n):
        for i in range(n):
            print(i)

    ar = rc[0].apply_async(many_lines, 500)
    ar.get(30)
    assert ar.stdout.splitlines() == [str(i) for i in range(500)]


def test_concurrent_futures_interop(rc):
    lv = rc.load_balanced_view()
    ars = [lv.apply_async(sleep_then, i, 0.3 - 0.1 * i) for i in range(3)]
    done, not_done = concurrent.futures.wait(ars, timeout=30)
    assert not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(ars)) == [0, 1, 2]
    seen = []
    ar = lv.apply_async(sleep_then, "cb", 0.0)
    ar.add_done_callback(lambda f: seen.append(f.result()))
    ar.get(30)
    concurrent.futures.wait([ar])
    assert seen == ["cb"] or ar.done()
    assert ar.cancel() is False


def test_awaitable_in_asyncio(rc):
    lv = rc.load_balanced_view()

    async def main():
        one = await lv.apply_async(sleep_then, 1, 0.1)
        many = await asyncio.gather(lv.apply_async(sleep_then, 2, 0.1), rc[:].apply_async(lambda: 3))
        return one, many

    one, many = asyncio.run(main())
    assert one == 1
    assert many == [2, [3] * len(rc)]


def test_iterating_multi_target_results(rc):
    ar = rc[:].apply_async(lambda: 5)
    assert list(ar) == [5] * len(rc)
    single = rc[0].apply_async(lambda: 5)
    with pytest.raises(TypeError):
        iter(single).__next__()
    assert len(ar) == len(rc)
    assert ar[0] == 5


def test_map_result_iterates_as_chunks_arrive(rc):
    lv = rc.load_balanced_view()
    ar = lv.map_async(lambda d: sleep_then(d, d), [2.0, 0.0, 0.0], ordered=False)
    it = iter(ar)
    assert next(it) == 0.0
    assert not ar.ready()  # the slow chunk is still running: we got the fast ones first
    assert sorted([0.0, *it]) == [0.0, 0.0, 2.0]
    assert len(ar) == 3


def test_abort_queued_task(rc):
    target = rc[rc.ids[0]]
    blocker = target.apply_async(sleep_then, 1, 2.0)
    queued = target.apply_async(lambda: "should not run")
    queued.abort()
    with pytest.raises(ipp.TaskAborted):
        queued.get(30)
    assert blocker.get(30) == 1
    with pytest.raises(AssertionError):
        blocker.abort()


def test_progress_and_wait_interactive(rc, capsys):
    ar = rc[:].apply_async(sleep_then, 0, 0.1)
    ar.wait_interactive(interval=0.05)
    assert ar.progress == len(rc)
    assert "tasks finished" in capsys.readouterr().out


def test_get_dict_r_and_timedelta(rc):
    ar = rc[:].apply_async(lambda: __import__("os").getpid())
    pids = ar.get_dict()
    assert sorted(pids) == rc.ids
    assert ar.r == list(pids.values())
    assert ar.result_dict == pids
    assert ar.timedelta(ar["submitted"], ar["received"]) == pytest.approx(ar.wall_time)
    lv_ar = rc.load_balanced_view().map_async(lambda x: x, range(2 * len(rc)))
    lv_ar.get(30)
    assert len(lv_ar.msg_ids) == 2 * len(rc)


def test_blocking_api_works_inside_a_running_event_loop(rc):
    async def notebook_cell():  # a notebook cell runs inside the kernel's event loop
        return rc[:].apply_sync(lambda: "sync in loop"), rc.load_balanced_view().map_sync(abs, [-1, -2])

    assert asyncio.run(notebook_cell()) == (["sync in loop"] * len(rc), [1, 2])
