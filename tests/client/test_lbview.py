"""LoadBalancedView over a real cluster: apply, map (chunksize, ordered), imap, dependencies, flags."""

from __future__ import annotations

import os
import time

import pytest

import ipcluster as ipp


def slow_identity(x, delay=0.0):
    import time

    time.sleep(delay)
    return x


def test_apply_family(rc):
    lv = rc.load_balanced_view()
    assert isinstance(lv, ipp.LoadBalancedView)
    assert lv.apply_sync(lambda x: x + 1, 1) == 2
    ar = lv.apply_async(pow, 2, 10)
    assert ar.get(30) == 1024
    assert ar.metadata["engine_id"] in rc.ids


def test_map_chunksize_and_order(rc):
    lv = rc.load_balanced_view()
    assert lv.map_sync(lambda x: x * 3, range(20)) == [x * 3 for x in range(20)]
    ar = lv.map_async(lambda x: x * 3, range(20), chunksize=6)
    assert len(ar.msg_ids) == 4
    assert ar.get(30) == [x * 3 for x in range(20)]
    assert lv.map_sync(lambda a, b: a * b, [1, 2, 3], [4, 5, 6], chunksize=2) == [4, 10, 18]


def test_unordered_iteration_yields_fast_results_first(rc):
    lv = rc.load_balanced_view()
    delays = [1.5, 0.0, 0.0]
    ar = lv.map_async(lambda d: slow_identity(d, d), delays, ordered=False)
    first = next(iter(ar))
    assert first == 0.0
    assert sorted(ar.get(30)) == sorted(delays)
    assert ar.get() == delays  # get() always keeps the submission order
    ordered = lv.map_async(lambda d: slow_identity(d, d), [0.3, 0.0], ordered=True)
    assert list(ordered) == [0.3, 0.0]


def test_imap(rc):
    lv = rc.load_balanced_view()

    def endless():
        i = 0
        while True:
            yield i
            i += 1

    out = []
    for value in lv.imap(lambda x: x * x, endless(), max_outstanding=4):
        out.append(value)
        if len(out) == 10:
            break
    assert out == [x * x for x in range(10)]
    assert sorted(lv.imap(lambda x: -x, range(5), ordered=False)) == [-4, -3, -2, -1, 0]


def test_targets_flag_restricts_engines(rc):
    target = rc.ids[-1]
    lv = rc.load_balanced_view(targets=[target])
    pid = rc[target].apply_sync(os.getpid)
    assert set(lv.map_sync(lambda x: __import__("os").getpid(), range(6))) == {pid}


def test_after_dependency_orders_tasks(rc):
    lv = rc.load_balanced_view()
    first = lv.apply_async(slow_identity, time.time(), 0.5)
    second = lv.apply_with_flags(lambda: __import__("time").time(), after=[first])
    assert second.get(30) >= first.get(30) + 0.4
    assert rc.metadata[second.msg_id]["started"] >= rc.metadata[first.msg_id]["completed"]


def test_follow_dependency_runs_on_same_engine(rc):
    lv = rc.load_balanced_view()
    first = lv.apply_async(os.getpid)
    first.get(30)
    with lv.temp_flags(follow=first):
        later = [lv.apply_async(lambda: __import__("os").getpid()) for _ in range(4)]
    assert {ar.get(30) for ar in later} == {first.get()}


def test_failed_after_dependency_is_impossible(rc):
    lv = rc.load_balanced_view()
    bad = lv.apply_async(lambda: 1 / 0)
    with pytest.raises(ipp.RemoteError):
        bad.get(30)
    dependent_task = lv.apply_with_flags(lambda: 1, after=bad)
    with pytest.raises(ipp.ImpossibleDependency):
        dependent_task.get(30)


def test_require_and_depend(rc):
    lv = rc.load_balanced_view()

    @ipp.require("json")
    def uses_json():
        return json.dumps({"a": 1})  # noqa: F821 - imported on the engine by require

    assert lv.apply_sync(uses_json) == '{"a": 1}'

    def on_any_engine():
        return True

    @ipp.depend(on_any_engine)
    def guarded(x):
        return x + 1

    assert lv.apply_sync(guarded, 1) == 2

    @ipp.require("module_that_does_not_exist_anywhere")
    def impossible():
        return 1

    with pytest.raises((ipp.ImpossibleDependency, ipp.UnmetDependency, ipp.RemoteError)):
        lv.apply_async(impossible).get(30)


def test_retries_rerun_failed_tasks(rc):
    lv = rc.load_balanced_view()
    good = rc.ids[-1]
    rc[:].push({"fail_here": True}, block=True)
    rc[good].push({"fail_here": False}, block=True)

    @ipp.interactive
    def flaky():
        if fail_here:  # noqa: F821 - pushed above
            raise RuntimeError("this engine fails")
        return "ok"

    with lv.temp_flags(retries=len(rc)):
        ar = lv.apply_async(flaky)
        assert ar.get(30) == "ok"
    assert ar.metadata["engine_id"] == good
    with pytest.raises(ipp.RemoteError, match="this engine fails"):
        rc.load_balanced_view(targets=rc.ids[:1]).apply_sync(flaky)


def test_lbview_parallel_decorator(rc):
    lv = rc.load_balanced_view()

    @lv.parallel(block=True)
    def total(chunk):
        return sum(chunk)

    assert total(range(4)) == [0, 1, 2, 3]  # called on chunks of one item each


def test_lb_flags_validated(rc):
    lv = rc.load_balanced_view()
    with pytest.raises(KeyError):
        lv.set_flags(bogus=True)
    with pytest.raises(TypeError):
        lv.set_flags(retries="many")
    with pytest.raises(ValueError, match="chunksize"):
        lv.map(lambda x: x, range(3), chunksize=0)


def test_executor(rc):
    from concurrent.futures import as_completed

    ex = rc.load_balanced_view().executor
    futures = [ex.submit(pow, 2, i) for i in range(5)]
    assert sorted(f.result() for f in as_completed(futures, timeout=30)) == [2**i for i in range(5)]
    assert list(ex.map(abs, [-1, -2, 3])) == [1, 2, 3]
