"""The Direct interface as ipyparallel's and IPython.parallel's docs use it, run as a user's script."""

from __future__ import annotations

import pytest
from acceptance_cluster import module_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from module_cluster(tmp_path_factory)


def test_apply_family_and_views_by_index(cluster):
    cluster.run(
        """
        import os
        import ipcluster as ipp

        rc = ipp.Client()
        rc.wait_for_engines(3, timeout=60)
        assert rc.ids == [0, 1, 2] and len(rc) == 3
        dview = rc[:]
        assert dview.targets == [0, 1, 2] or dview.targets == "all"
        assert rc[0].targets == 0 and rc[-1].targets == 2 and rc[::2].targets == [0, 2]
        dview.block = True
        assert dview.apply(lambda: 5) == [5, 5, 5]
        assert rc[0].apply_sync(lambda: 5) == 5  # a single engine gives a scalar
        assert dview.apply_sync(pow, 2, 3) == [8, 8, 8]
        assert dview.apply_async(lambda x: x + 1, 1).get(30) == [2, 2, 2]
        assert len(set(dview.apply(os.getpid))) == 3
        dview.block = False
        ar = dview.apply(lambda: 1)
        assert isinstance(ar, ipp.AsyncResult) and ar.get(30) == [1, 1, 1]
        rc.close()
        """
    )


def test_map_family_including_unequal_lengths_like_builtin_map(cluster):
    cluster.run(
        """
        import ipcluster as ipp

        rc = ipp.Client()
        dview = rc[:]
        assert dview.map_sync(lambda x: x * x, range(10)) == [x * x for x in range(10)]
        assert dview.map_async(lambda a, b: a + b, [1, 2, 3], [10, 20, 30]).get(30) == [11, 22, 33]
        # unequal lengths: the shortest wins, as with the builtin map
        assert dview.map_sync(lambda a, b: (a, b), range(5), range(3)) == list(map(lambda a, b: (a, b), range(5), range(3)))
        assert rc.load_balanced_view().map_sync(lambda a, b: a * b, [1, 2, 3, 4], [5, 6]) == [5, 12]
        dview.block = True
        assert dview.map(str, range(4)) == ["0", "1", "2", "3"]
        rc.close()
        """
    )


def test_execute_returns_finished_result_with_output_and_raises_errors(cluster):
    cluster.run(
        """
        import ipcluster as ipp

        rc = ipp.Client()
        dview = rc[:]
        ar = dview.execute("a = 5", block=True)
        assert ar.ready() and ar.successful()
        ar = dview.execute("print('hello from', a)", block=True)
        assert ar.stdout == ["hello from 5\\n"] * 3
        ar = dview.execute("b = a * 2")              # non-blocking by default
        ar.get(30)
        assert dview.pull("b", block=True) == [10, 10, 10]
        try:
            dview.execute("1/0", block=True)
        except ipp.CompositeError as e:
            assert e.elist[0][0] == "ZeroDivisionError"
        else:
            raise AssertionError("no error")
        try:
            rc[0].execute("undefined_name", block=True)
        except ipp.RemoteError as e:
            assert e.ename == "NameError"
        else:
            raise AssertionError("no error")
        rc.close()
        """
    )


def test_run_a_local_file_on_the_engines(cluster):
    cluster.run(
        """
        import pathlib, tempfile
        import ipcluster as ipp

        rc = ipp.Client()
        dview = rc[:]
        path = pathlib.Path(tempfile.mkdtemp()) / "setup_engines.py"
        path.write_text("ready = 42\\n")
        dview.run(str(path), block=True)
        assert dview["ready"] == [42, 42, 42]
        rc.close()
        """
    )


def test_push_pull_item_access_and_targets(cluster):
    cluster.run(
        """
        import ipcluster as ipp

        rc = ipp.Client()
        dview = rc[:]
        dview.block = True
        dview.push({"x": 1, "y": [1, 2]})
        assert dview.pull("x") == [1, 1, 1]
        assert dview.pull(["x", "y"]) == [[1, [1, 2]]] * 3
        assert dview.pull(("x", "y"), targets=0) == [1, [1, 2]]
        dview.push({"z": 9}, targets=[0, 1])
        assert rc[0].pull("z", block=True) == 9 and rc[1]["z"] == 9
        dview["a"] = 5
        assert dview["a"] == [5, 5, 5]
        ar = rc[:].push({"w": 3}, block=False)
        ar.get(30)
        assert rc[2]["w"] == 3
        rc.close()
        """
    )


def test_scatter_gather_lists_arrays_and_flatten(cluster):
    cluster.run(
        """
        import numpy as np
        import ipcluster as ipp

        rc = ipp.Client()
        dview = rc[:]
        dview.block = True
        dview.scatter("s", list(range(10)))
        assert dview["s"] == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
        assert dview.gather("s") == list(range(10))
        dview.scatter("arr", np.arange(12.0))
        parts = dview["arr"]
        assert all(isinstance(p, np.ndarray) for p in parts)
        assert np.array_equal(dview.gather("arr"), np.arange(12.0))
        dview.scatter("one", [10, 20, 30], flatten=True)
        assert dview["one"] == [10, 20, 30]
        dview.execute("total = sum(s)")
        assert sum(dview["total"]) == 45
        ar = dview.scatter("t", list(range(6)), block=False)
        ar.get(30)
        assert dview.gather("t", block=False).get(30) == list(range(6))
        rc.close()
        """
    )


def test_remote_and_parallel_decorators(cluster):
    cluster.run(
        """
        import ipcluster as ipp

        rc = ipp.Client()
        dview = rc[:]

        @dview.remote(block=True)
        def getpid():
            import os
            return os.getpid()

        assert len(set(getpid())) == 3

        @dview.parallel(block=True)
        def total(chunk):
            return sum(chunk)

        assert sum(total(range(100))) == 4950

        @dview.parallel(block=True)
        def double(x):
            return 2 * x

        assert double.map(range(5)) == [0, 2, 4, 6, 8]

        @ipp.remote(dview, block=False)
        def answer():
            return 42

        assert answer().get(30) == [42, 42, 42]
        rc.close()
        """
    )


def test_sync_imports_imports_only_what_the_block_names(cluster):
    out = cluster.run(
        """
        import ipcluster as ipp

        rc = ipp.Client()
        dview = rc[:]
        with dview.sync_imports():
            import numpy
            from json import dumps
        assert dview.apply_sync(lambda: (numpy.__name__, dumps(1))) == [("numpy", "1")] * 3
        rc.close()
        """
    )
    # numpy's own imports (os, re, warnings ...) are numpy's business, not lines of the user's block
    assert out.splitlines() == ["importing numpy on engine(s)", "importing dumps from json on engine(s)"]


def test_flags_temp_flags_and_apply_with_flags(cluster):
    cluster.run(
        """
        import ipcluster as ipp

        rc = ipp.Client()
        dview = rc[:]
        with dview.temp_flags(targets=0, block=True):
            assert dview.apply(lambda: "first") == "first"
        dview.set_flags(block=True)
        assert dview.block is True
        assert dview.apply_with_flags(pow, args=(2, 5), block=True) == [32, 32, 32]
        dview.set_flags(block=False)
        rc.close()
        """
    )
