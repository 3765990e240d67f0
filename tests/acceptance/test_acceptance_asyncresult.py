"""AsyncResult as ipyparallel documents it, plus the seed's Metadata keys (pyin/pyout/pyerr included)."""

from __future__ import annotations

import pytest
from acceptance_cluster import module_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from module_cluster(tmp_path_factory)


def test_get_timeout_wait_ready_successful_result(cluster):
    cluster.run(
        """
        import time
        import ipcluster as ipp

        rc = ipp.Client()
        ar = rc.load_balanced_view().apply_async(time.sleep, 0.5)
        try:
            ar.get(0.01)
        except ipp.error.TimeoutError as e:
            assert isinstance(e, ipp.TimeoutError) and isinstance(e, TimeoutError)
        else:
            raise AssertionError("no timeout")
        assert not ar.ready() and ar.wait(0.01) is False
        assert ar.wait() is True and ar.ready() and ar.successful()
        assert ar.get() is None and ar.result() is None and ar.get(1) is None
        assert ar.elapsed > 0 and ar.serial_time > 0.4 and ar.wall_time > 0.4
        assert len(ar.msg_ids) == 1 and ar.msg_id == ar.msg_ids[0]
        rc.close()
        """
    )


def test_metadata_has_the_seed_keys_by_attribute_and_item(cluster):
    cluster.run(
        """
        import datetime
        import ipcluster as ipp

        rc = ipp.Client()
        keys = ("msg_id submitted started completed received engine_uuid engine_id follow after status "
                "pyin pyout pyerr stdout stderr").split()

        def hello():
            print("out")
            return 1

        ar = rc[0].apply_async(hello)
        ar.get(30)
        md = ar.metadata
        for key in keys:
            assert key in md, key
            assert getattr(md, key) == md[key] == md.get(key), key
        assert md.msg_id == ar.msg_id and md.engine_id == 0 and md.status == "ok"
        assert all(isinstance(md[k], datetime.datetime) for k in ("submitted", "started", "completed", "received"))
        assert md.submitted <= md.started <= md.completed <= md.received
        assert md.stdout == "out\\n" and md.stderr == "" and md.pyerr is None
        assert ar.stdout == "out\\n" and ar.engine_id == 0            # ipyparallel: metadata keys on the result
        assert rc.metadata[ar.msg_id] is md

        ar = rc[1].execute("1/0", silent=False)   # silent (the default) publishes no input and no error
        try:
            ar.get(30)
        except ipp.RemoteError:
            pass
        assert ar.metadata.status == "error" and ar.metadata.pyerr is not None
        assert ar.metadata.pyerr.ename == "ZeroDivisionError"
        assert ar.metadata.pyin == ar.metadata["execute_input"] == "1/0"
        rc.close()
        """
    )


def test_outputs_per_engine_and_display_outputs(cluster):
    out = cluster.run(
        """
        import sys
        import ipcluster as ipp

        rc = ipp.Client()

        def hello(x):
            print("hello", x)
            print("warn", x, file=sys.stderr)
            return x

        ar = rc[:].apply_async(hello, 1)
        assert ar.get(30) == [1, 1, 1]
        assert ar.stdout == ["hello 1\\n"] * 3 and ar.stderr == ["warn 1\\n"] * 3
        assert len(ar.metadata) == 3 and [m.engine_id for m in ar.metadata] == [0, 1, 2]
        ar.display_outputs()
        rc.close()
        """
    )
    assert "[stdout:0] hello 1" in out and "[stdout:2] hello 1" in out


def test_map_results_iterate_index_len_and_get_dict(cluster):
    cluster.run(
        """
        import ipcluster as ipp

        rc = ipp.Client()
        amr = rc.load_balanced_view().map_async(lambda x: x * x, range(6))
        assert [v for v in amr] == [0, 1, 4, 9, 16, 25]
        assert len(amr) == 6 and amr[2] == 4 and amr[1:3] == [1, 4] and amr[-1] == 25
        ar = rc[:].apply_async(lambda: "x")
        assert ar.get_dict() == {0: "x", 1: "x", 2: "x"}
        assert ar[0] == "x" and len(ar) == 3
        rc.close()
        """
    )


def test_await_in_asyncio_and_concurrent_futures(cluster):
    cluster.run(
        """
        import asyncio
        import concurrent.futures
        import ipcluster as ipp

        rc = ipp.Client()
        lview = rc.load_balanced_view()

        async def main():
            a = await lview.apply_async(lambda: "awaited")
            b = await asyncio.gather(*(lview.apply_async(pow, 2, i) for i in range(4)))
            return a, b

        assert asyncio.run(main()) == ("awaited", [1, 2, 4, 8])
        futures = [lview.apply_async(pow, 3, i) for i in range(4)]
        done, not_done = concurrent.futures.wait(futures, timeout=30)
        assert not not_done and sorted(f.result() for f in done) == [1, 3, 9, 27]
        assert sorted(f.result() for f in concurrent.futures.as_completed(futures)) == [1, 3, 9, 27]
        rc.close()
        """
    )


def test_abort_a_queued_task(cluster):
    cluster.run(
        """
        import time
        import ipcluster as ipp

        rc = ipp.Client()
        busy = rc[0].apply_async(time.sleep, 0.5)
        queued = rc[0].apply_async(lambda: "never")
        queued.abort()
        try:
            queued.get(30)
        except ipp.TaskAborted:
            pass
        else:
            raise AssertionError("not aborted")
        assert queued.ready() and not queued.successful()
        busy.get(30)
        rc.close()
        """
    )


def test_track_true_lets_the_caller_modify_arrays_once_sent(cluster):
    cluster.run(
        """
        import numpy as np
        import ipcluster as ipp

        rc = ipp.Client()
        dview = rc[:]
        a = np.zeros(500_000)
        ar = dview.apply_with_flags(lambda x: float(x.sum()), args=(a,), track=True)
        ar.wait_for_send()
        assert ar.sent
        a[:] = 1                                     # safe: the call no longer uses a
        assert ar.get(30) == [0.0, 0.0, 0.0]
        lview = rc.load_balanced_view()
        lview.track = True
        b = np.zeros(500_000)
        ar = lview.map(lambda x: float(x), b, chunksize=250_000)
        ar.wait_for_send()
        b[:] = 1
        assert sum(ar.get(30)) == 0.0
        dview.set_flags(track=True)
        c = np.zeros(500_000)
        ar = dview.push({"c": c})
        c[:] = 1
        ar.get(30)
        assert dview.apply_sync(lambda: float(c.sum())) == [0.0, 0.0, 0.0]
        rc.close()
        """
    )
