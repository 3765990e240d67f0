"""Client.resubmit against a real cluster: finished tasks run again as new tasks, answered to this client."""

from __future__ import annotations

import os
import time

import pytest

import ipcluster as ipp


def double(x):
    return 2 * x


def test_resubmit_a_load_balanced_task_gives_the_same_result_as_a_new_task(rc):
    ar = rc.load_balanced_view().apply_async(double, 21)
    assert ar.get(30) == 42
    again = rc.resubmit(ar.msg_ids)
    assert isinstance(again, ipp.AsyncHubResult)
    assert again.get(30) == [42]
    assert again.msg_ids[0] != ar.msg_id and again.msg_ids[0] in rc.history
    assert again.metadata[0].status == "ok" and again.metadata[0].engine_id in rc.ids
    assert rc.results[ar.msg_id] == 42  # the original stays
    (record,) = rc.db_query({"msg_id": ar.msg_id}, keys=["resubmitted"])
    assert record["resubmitted"] == again.msg_ids[0]


def test_resubmit_a_direct_task_with_block_and_flags(rc):
    ar = rc[0].apply_async(os.getpid)
    ar.get(30)
    again = rc.resubmit(ar.msg_id, block=True)
    assert again.ready() and isinstance(again.get()[0], int)
    last = rc.ids[-1]
    pinned = rc.resubmit(ar, subheader={"targets": [last], "retries": 1})
    assert pinned.get(30) == [rc[last].apply_sync(os.getpid)]
    assert pinned.metadata[0].engine_id == last
    assert rc.resubmit().get(30) is not None  # default: the last task in the history
    with pytest.raises(KeyError, match="the flags a resubmitted task takes"):
        rc.resubmit(ar, metadata={"block": True})


def test_resubmit_execute_publishes_its_result_again(rc):
    ar = rc[0].execute("6 * 7", block=True)
    again = rc.resubmit(ar, block=True)
    assert again.metadata[0].pyout["data"]["text/plain"] == "42"


def test_resubmit_refuses_tasks_in_flight_and_unknown_ids(rc):
    busy = rc[1].apply_async(time.sleep, 1)
    with pytest.raises(ipp.RemoteError, match=f"Task {busy.msg_id} appears to be inflight") as info:
        rc.resubmit(busy)
    assert isinstance(info.value, ValueError)
    busy.get(30)
    with pytest.raises(KeyError, match="no-such-task") as info:
        rc.resubmit(["no-such-task"])
    assert isinstance(info.value, ipp.RemoteError)
    assert not rc.outstanding  # nothing left waiting for replies that will never come


def test_resubmit_of_a_task_whose_buffers_went_through_shared_memory_is_refused(cluster):
    import numpy as np

    rc = cluster.client(shm_threshold=1024)
    try:
        ar = rc[0].apply_async(np.sum, np.ones(10_000))
        assert ar.get(30) == 10_000
        if not any(rc.db_query({"msg_id": ar.msg_id}, keys=["header"])[0]["header"].get("shm") or ()):
            pytest.skip("no shared memory on this machine")
        with pytest.raises(ipp.RemoteError, match="shared memory and are gone; submit it again"):
            rc.resubmit(ar)
    finally:
        rc.close()
