"""Blocking calls on sync lanes (client/lanes.py): the caller sends and receives itself, with the same results,
outputs, errors, ordering and late replies as through the IO thread."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from cluster_helpers import wait_for

import ipcluster as ipp
from ipcluster.client import io as clientio


def sleep_then(x, delay):
    import time

    time.sleep(delay)
    return x


def shout(word):
    print(word)
    return word.upper()


@ipp.interactive
def set_later(value, delay):
    import time

    time.sleep(delay)
    globals()["lane_order_value"] = value


@ipp.interactive
def get_value():
    return lane_order_value  # noqa: F821 - defined in the engine's namespace by set_later


def test_blocking_calls_go_through_lanes_and_return_their_results(rc):
    e0, lview = rc[rc.ids[0]], rc.load_balanced_view()
    before = rc._io.lanes.lanes_made()
    assert e0.apply_sync(pow, 2, 10) == 1024
    assert lview.apply_sync(pow, 3, 3) == 27
    assert rc[:].apply_sync(abs, -5) == [5] * len(rc.ids)
    assert rc._io.lanes.lanes_made() > before  # a lane per channel at least, reused from then on
    made = rc._io.lanes.lanes_made()
    for i in range(20):
        assert e0.apply_sync(abs, -i) == i
        assert lview.apply_sync(abs, -i) == i
    assert rc._io.lanes.lanes_made() == made
    with pytest.raises(ipp.RemoteError, match="ZeroDivisionError"):
        e0.apply_sync(divmod, 1, 0)
    assert not rc.outstanding


def test_records_name_the_client_session_for_lane_requests(rc):
    e0, lview = rc[rc.ids[0]], rc.load_balanced_view()
    e0.apply_sync(abs, -1)
    lview.apply_sync(abs, -2)
    direct_id, task_id = e0.history[-1], lview.history[-1]
    records = rc.db_query({"msg_id": {"$in": [direct_id, task_id]}}, keys=["client_uuid", "queue"])
    assert {r["queue"]: r["client_uuid"] for r in records} == {
        "mux": rc.session.session,
        "task": rc.session.session,
    }


def test_threads_calling_apply_sync_at_once_each_get_their_own_results(rc):
    e0, lview = rc[rc.ids[0]], rc.load_balanced_view()
    errors: list[BaseException] = []
    wrong: list[tuple] = []
    start = threading.Barrier(4)

    def caller(k: int) -> None:
        try:
            start.wait(10)
            for i in range(25):
                view = e0 if (i + k) % 2 else lview
                got = view.apply_sync(sleep_then, (k, i), 0.002)
                if got != (k, i):
                    wrong.append((k, i, got))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and not wrong
    assert rc._io.lanes.lanes_made() >= 2  # concurrent callers each had a lane of their own


def test_output_of_a_sync_call_is_in_its_metadata(rc):
    e0, lview = rc[rc.ids[0]], rc.load_balanced_view()
    for view in (e0, lview):
        for i in range(5):
            assert view.apply_sync(shout, f"word{i}") == f"WORD{i}"
            md = rc.metadata[view.history[-1]]
            assert md.stdout == f"word{i}\n"
            assert md.status == "ok" and md.received is not None
    ar = e0.execute("print('from execute')", block=True)
    assert ar.stdout == "from execute\n"


def test_a_sync_call_keeps_its_place_behind_earlier_async_requests(rc):
    """The lane is not used while a request this client sent through the IO thread is unanswered: the
    sync call must not overtake it on its way to the engine."""
    e0 = rc[rc.ids[0]]
    for value in range(3):
        e0.apply_async(set_later, value, 0.2)
        assert e0.apply_sync(get_value) == value
    lview = rc.load_balanced_view()
    first = lview.apply_async(sleep_then, "first", 0.3)
    with lview.temp_flags(after=[first]):
        assert lview.apply_sync(sleep_then, "second", 0) == "second"
    assert first.get(10) == "first"


def test_an_interrupted_sync_call_still_gets_its_late_reply(rc):
    e0 = rc[rc.ids[0]]
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            e0.apply_sync(sleep_then, "late", 1.0)
    finally:
        timer.cancel()
    msg_id = e0.history[-1]
    assert msg_id in rc.outstanding
    # the IO thread took the lane over and delivers the reply when it comes
    assert rc.get_result(msg_id).get(10) == "late"
    wait_for(lambda: msg_id not in rc.outstanding, 30)
    assert rc.metadata[msg_id].status == "ok"
    # and the next calls get their own results, not that one
    assert [e0.apply_sync(abs, -i) for i in range(5)] == list(range(5))


def test_closing_the_client_ends_a_waiting_sync_call(cluster):
    client = cluster.client()
    outcome: list[BaseException | object] = []

    def caller() -> None:
        try:
            outcome.append(client[client.ids[0]].apply_sync(sleep_then, 1, 5.0))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    wait_for(lambda: len(client.outstanding) == 1, 30)
    t0 = time.monotonic()
    client.close()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - t0 < 4.0
    assert isinstance(outcome[0], ipp.EngineError) and "closed" in str(outcome[0])


def test_resubmitted_replies_do_not_stop_the_lanes(rc):
    lview = rc.load_balanced_view()
    lview.apply_sync(abs, -3)
    rc.resubmit(lview.history[-1]).get(10)
    # the resubmitted task's reply came on the IO thread's socket: it is counted as expected, so the
    # counters that let a blocking call take a lane agree again
    wait_for(lambda: rc._io._answered[clientio.TASK] == rc._io._queued[clientio.TASK], 10)
    assert lview.apply_sync(abs, -4) == 4


def test_engine_dying_under_a_sync_call_raises_engine_error(small_cluster):
    with small_cluster.client() as rc:
        victim_id = rc.ids[0]
        victim_pid = rc[victim_id].apply_sync(os.getpid)
        victim = next(p for p in small_cluster.engines if p.pid == victim_pid)
        threading.Timer(0.5, victim.send_signal, (signal.SIGKILL,)).start()
        with pytest.raises(ipp.EngineError):
            rc[victim_id].apply_sync(sleep_then, 1, 30)
        wait_for(lambda: victim_id not in rc.ids, 30)
        assert rc.load_balanced_view().apply_sync(abs, -7) == 7


def test_a_waiting_caller_polls_only_while_replies_come_back_quickly(rc, monkeypatch):
    from ipcluster.client import lanes

    e0, pool = rc[rc.ids[0]], rc._io.lanes
    assert e0.apply_sync(sleep_then, 1, 0.1) == 1
    assert pool._typical_wait >= lanes.SPIN_S  # calls take long: the next caller sleeps at once
    for _ in range(3):
        assert e0.apply_sync(abs, -2) == 2
    assert pool._typical_wait < 0.05  # a quick reply counts at once
    monkeypatch.setattr(lanes, "SPIN_S", 0.0)
    assert e0.apply_sync(abs, -3) == 3 and not pool._spinning
