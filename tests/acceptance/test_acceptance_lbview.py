"""The Task interface (LoadBalancedView, flags, dependencies) as the seed's task doc and ipyparallel use it."""

from __future__ import annotations

import pytest
from acceptance_cluster import module_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from module_cluster(tmp_path_factory)


def test_apply_map_chunksize_unordered_and_imap(cluster):
    cluster.run(
        """
        import time
        import ipcluster as ipp

        rc = ipp.Client()
        lview = rc.load_balanced_view()
        assert isinstance(lview, ipp.LoadBalancedView)
        ar = lview.apply(lambda: 1)                   # non-blocking by default
        assert isinstance(ar, ipp.AsyncResult) and ar.get(30) == 1
        assert lview.apply_sync(lambda x: x + 1, 41) == 42
        assert lview.map(lambda x: x + 1, range(10)).get(30) == list(range(1, 11))
        amr = lview.map(lambda x: x * 2, range(10), chunksize=3, ordered=False)
        assert sorted(amr) == [x * 2 for x in range(10)] and len(amr.msg_ids) == 4  # 4 tasks of <= 3 items
        assert amr.get() == [x * 2 for x in range(10)]                      # get() keeps the input order
        arrival = list(lview.map_async(lambda x: (time.sleep(0.1 * x), x)[1], [3, 0], ordered=False))
        assert arrival == [0, 3]
        assert list(lview.imap(lambda x: x * 3, range(6))) == [0, 3, 6, 9, 12, 15]
        lview.block = True
        assert lview.map(lambda x: -x, [1, 2]) == [-1, -2]

        @lview.parallel()
        def f(x):
            return x * 10

        assert f.map(range(5)) == [0, 10, 20, 30, 40]  # lview.block is True, as in the seed task doc
        rc.close()
        """
    )


def test_flags_retries_timeout_and_targets(cluster):
    cluster.run(
        """
        import time
        import ipcluster as ipp

        rc = ipp.Client()
        lview = rc.load_balanced_view()
        with lview.temp_flags(retries=2):
            assert lview.retries == 2
            assert lview.apply_sync(lambda: "ok") == "ok"
        assert lview.retries == 0
        lview.set_flags(retries=1, timeout=10)
        assert (lview.retries, lview.timeout) == (1, 10)
        lview.set_flags(retries=0, timeout=None)
        only = rc.load_balanced_view(targets=[rc.ids[-1]])
        assert {only.apply_sync(lambda: __import__("os").getpid()) for _ in range(4)} == {rc[-1].apply_sync(__import__("os").getpid)}
        rc.close()
        """
    )


def test_after_follow_and_timeout_dependencies_from_the_seed_task_doc(cluster):
    cluster.run(
        """
        import time
        import ipcluster as ipp

        rc = ipp.Client()
        lview = rc.load_balanced_view()
        ar1 = lview.apply(time.sleep, 0.3)
        ar2 = lview.apply_with_flags(lambda: "after", after=[ar1], follow=[ar1], timeout=2.5)
        assert ar2.get(30) == "after"
        assert ar2.metadata.engine_id == ar1.metadata.engine_id            # follow: same engine
        assert ar2.metadata.started >= ar1.metadata.completed               # after: once ar1 finished
        with lview.temp_flags(follow=ar1):
            assert lview.apply_sync(lambda: 1) == 1
        dep = ipp.Dependency([ar1.msg_id], all=True, success=True, failure=False)
        assert lview.apply_with_flags(lambda: "dep", after=dep).get(30) == "dep"

        def fails():
            raise ValueError("no")

        bad = lview.apply(fails)
        try:
            bad.get(30)
        except ipp.RemoteError:
            pass
        never = lview.apply_with_flags(lambda: "x", after=[bad])           # success-only dependency failed
        try:
            never.get(30)
        except ipp.ImpossibleDependency:
            pass
        else:
            raise AssertionError("a task after a failed one must not run")
        rc.close()
        """
    )


def test_functional_dependencies_require_depend_dependent(cluster):
    cluster.run(
        """
        import ipcluster as ipp

        rc = ipp.Client()
        lview = rc.load_balanced_view()

        @ipp.require("math")
        def usemath():
            return math.floor(2.5)  # noqa: F821 - imported on the engine by require

        assert lview.apply_sync(usemath) == 2

        def has_two():
            return True

        @ipp.depend(has_two)
        def dep():
            return "dep"

        assert lview.apply_sync(dep) == "dep"
        assert lview.apply_sync(ipp.dependent(lambda: "dependent", has_two)) == "dependent"

        @ipp.require("module_that_does_not_exist_anywhere")
        def impossible():
            return 1

        try:
            lview.apply_sync(impossible)
        except ipp.ImpossibleDependency:
            pass
        else:
            raise AssertionError("no engine can import that module")
        rc.close()
        """
    )


def test_reference_and_interactive(cluster):
    cluster.run(
        """
        import ipcluster as ipp

        rc = ipp.Client()
        dview = rc[:]
        dview.push({"a": 7}, block=True)

        @ipp.interactive
        def use_global():
            return a  # noqa: F821 - lives on the engines

        assert dview.apply_sync(use_global) == [7, 7, 7]
        assert dview.apply_sync(lambda x: x * 2, ipp.Reference("a")) == [14, 14, 14]
        assert rc.load_balanced_view().apply_sync(lambda x: x, ipp.Reference("a")) == 7
        rc.close()
        """
    )
