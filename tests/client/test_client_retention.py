"""The client's memory stays flat: results/metadata beyond ``max_results`` are dropped once their
AsyncResult is gone, live AsyncResults keep theirs, and history costs 8 bytes per task."""

from __future__ import annotations

import gc

import pytest

from ipcluster.client.retention import History


def square(x):
    return x * x


def test_results_and_metadata_stay_bounded_over_thousands_of_tasks(cluster):
    rc = cluster.client(max_results=50)
    try:
        view = rc.load_balanced_view()
        n = 0
        for _ in range(15):
            ars = [view.apply_async(square, i) for i in range(200)]
            assert [ar.get(60) for ar in ars] == [i * i for i in range(200)]
            n += len(ars)
            del ars
        gc.collect()
        assert len(rc.history) == n == 3000
        # only the 50 most recent tasks are kept, whatever was submitted
        assert len(rc.metadata) <= 50
        assert len(rc._replies) <= 50
        assert len(rc.results) <= 50
        recent, old = rc.history[-1], rc.history[0]
        assert rc.results[recent] == 199 * 199
        assert rc.metadata[recent].completed is not None
        with pytest.raises(KeyError):
            rc.results[old]
        assert old not in rc.metadata
        assert old in rc.history
    finally:
        rc.close()


def test_a_live_async_result_keeps_its_metadata_until_it_is_collected(cluster):
    rc = cluster.client(max_results=10)
    try:
        view = rc.load_balanced_view()
        kept = view.map_async(square, range(200))
        assert kept.get(60) == [x * x for x in range(200)]
        for i in range(100):
            view.apply_async(square, i).get(60)
        gc.collect()
        mds = kept.metadata
        assert len(mds) == 200 and all(md.completed is not None for md in mds)
        assert kept.get() == [x * x for x in range(200)]
        assert all(m in rc.metadata for m in kept.msg_ids)
        ids = kept.msg_ids
        del kept, mds
        gc.collect()
        assert not any(m in rc.metadata for m in ids)
        assert len(rc.metadata) <= 10
    finally:
        rc.close()


def test_max_results_none_keeps_everything(cluster):
    rc = cluster.client(max_results=None)
    try:
        view = rc.load_balanced_view()
        for i in range(30):
            view.apply_async(square, i).get(60)
        gc.collect()
        assert len(rc.metadata) == 30 and len(rc.results) == 30
    finally:
        rc.close()


def test_history_is_a_compact_list_of_msg_ids():
    h = History("abc-")
    ids = [f"abc-{i:x}" for i in range(1, 40)] + ["foreign-id", "abc-zz", "abc-01"]
    h.extend(ids)
    assert len(h) == len(ids) and list(h) == ids and h == ids
    assert h[-3:] == ids[-3:] and h[0] == "abc-1" and h[-1] == "abc-01"
    assert "abc-1f" in h and "foreign-id" in h and "abc-zz" in h and "abc-999" not in h
    with pytest.raises(IndexError):
        h[len(ids)]
    assert h._counters.itemsize == 8
