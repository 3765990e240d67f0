"""Remote errors as the seed and ipyparallel define them: RemoteError, CompositeError.elist, timeouts."""

from __future__ import annotations

import pytest
from acceptance_cluster import module_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from module_cluster(tmp_path_factory)


def test_remote_error_attributes_and_print_traceback(cluster):
    out = cluster.run(
        """
        import ipcluster as ipp

        rc = ipp.Client()

        def bad():
            raise ValueError("boom")

        try:
            rc[0].apply_sync(bad)
        except ipp.RemoteError as e:
            assert (e.ename, e.evalue) == ("ValueError", "boom")
            assert isinstance(e.traceback, str) and "boom" in e.traceback
            assert e.engine_info["engine_id"] == 0 and "engine_uuid" in e.engine_info
            e.print_traceback()
        else:
            raise AssertionError("no error")
        rc.close()
        """
    )
    assert "ValueError: boom" in out


def test_composite_error_elist_tuples_and_raise_exception(cluster):
    out = cluster.run(
        """
        import ipcluster as ipp

        rc = ipp.Client()

        def bad():
            raise KeyError("missing")

        try:
            rc[:].apply_sync(bad)
        except ipp.CompositeError as e:
            assert len(e.elist) == 3
            for ename, evalue, tb, info in e.elist:              # the seed's (ename, evalue, tb, engine_info)
                assert ename == "KeyError" and "missing" in evalue and isinstance(tb, str)
            assert sorted(info["engine_id"] for *_, info in e.elist) == [0, 1, 2]
            assert e.elist[0][0] == "KeyError" and e.elist[0].ename == "KeyError"
            try:
                e.raise_exception()
            except ipp.RemoteError as one:
                assert one.ename == "KeyError"
            e.print_traceback()
            e.print_traceback(1)
        else:
            raise AssertionError("no CompositeError")
        ar = rc[:].apply_async(bad)
        try:
            ar.get(30)
        except ipp.CompositeError:
            pass
        assert ar.ready() and not ar.successful()
        try:
            rc.load_balanced_view().map_sync(lambda x: 1 / x, [1, 0, 2])
        except ipp.RemoteError as e:          # one failed task of a map
            assert e.ename == "ZeroDivisionError"
        rc.close()
        """
    )
    assert out.count("[Engine Exception on engine") == 4


def test_error_classes_are_importable_by_their_seed_names(cluster):
    cluster.run(
        """
        import time
        import ipcluster as ipp
        from ipcluster import error
        from ipcluster.error import CompositeError, EngineError, RemoteError, TaskAborted, TimeoutError

        assert ipp.TimeoutError is error.TimeoutError and issubclass(error.TimeoutError, TimeoutError)
        assert issubclass(CompositeError, RemoteError)
        for name in ("NoEnginesRegistered", "EngineError", "TaskAborted", "TaskTimeout", "ImpossibleDependency",
                     "UnmetDependency", "InvalidDependency", "RemoteError", "CompositeError"):
            assert getattr(ipp, name) is getattr(error, name)
        rc = ipp.Client()
        ar = rc.load_balanced_view().apply_async(time.sleep, 1)
        try:
            ar.get(0.01)
        except ipp.error.TimeoutError:
            pass
        ar.get(30)
        rc.close()
        """
    )


def test_array_modified_while_sent_is_an_error_not_a_hang(cluster):
    cluster.run(
        """
        import numpy as np
        import ipcluster as ipp

        rc = ipp.Client()
        for view in (rc[0], rc.load_balanced_view()):
            a = np.zeros(2_000_000)
            ar = view.apply_async(lambda x: float(x.sum()), a)
            a[:] = 1                               # before the IO thread sent it: the signed digest breaks
            try:
                value = ar.get(30)                 # the engine answers instead of dropping the request
            except ipp.RemoteError as e:
                assert e.ename == "SerializationError" and "track=True" in e.evalue, e.evalue
            else:
                assert value in (0.0, 2_000_000.0)  # it may also have been sent before the change
        assert rc[:].apply_sync(lambda: 1) == [1, 1, 1]
        rc.close()
        """
    )
