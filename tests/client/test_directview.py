"""DirectView over a real cluster: apply, map, execute, run, push/pull, scatter/gather, flags, decorators."""

from __future__ import annotations

import pytest

import ipcluster as ipp


def square(x):
    return x * x


def test_ids_and_views(rc, cluster):
    assert rc.ids == sorted(rc.ids)
    assert len(rc) == len(cluster.engines) == len(rc.ids)
    assert rc[:].targets == rc.ids
    assert rc[0].targets == rc.ids[0]
    assert rc[::2].targets == rc.ids[::2]
    assert rc[-1].targets == rc.ids[-1]
    assert isinstance(rc[:], ipp.DirectView)
    with pytest.raises(TypeError):
        rc["a"]
    with pytest.raises(IndexError, match="No such engine"):
        rc[[999]]


def test_apply_family(rc):
    dv = rc[:]
    assert dv.apply_sync(lambda: 42) == [42] * len(rc)
    ar = dv.apply_async(square, 3)
    assert isinstance(ar, ipp.AsyncResult)
    assert ar.get(timeout=30) == [9] * len(rc)
    assert rc[0].apply_sync(square, 4) == 16  # a single int target gives a scalar
    dv.block = True
    try:
        assert dv.apply(square, 5) == [25] * len(rc)
    finally:
        dv.block = False
    assert isinstance(dv.apply(square, 5), ipp.AsyncResult)


def test_apply_kwargs_and_engine_globals(rc):
    def f(a, b=1, *, c=0):
        return a + b + c

    assert rc[0].apply_sync(f, 1, b=2, c=3) == 6


def test_map(rc):
    dv = rc[:]
    assert dv.map_sync(square, range(10)) == [x * x for x in range(10)]
    assert dv.map_sync(lambda a, b: a + b, [1, 2, 3], [10, 20, 30]) == [11, 22, 33]
    ar = dv.map_async(square, range(7))
    assert ar.get(30) == [x * x for x in range(7)]
    assert list(ar) == [x * x for x in range(7)]
    assert dv.map_sync(square, []) == []
    assert dv.map_sync(square, [3]) == [9]  # fewer items than engines
    # unequal lengths: the shortest wins, as with the builtin map (and ipyparallel's view.map)
    assert dv.map_sync(lambda a, b: (a, b), [1, 2], [1]) == [(1, 1)]


def test_push_pull_and_item_access(rc):
    dv = rc[:]
    dv.push({"a": 5, "b": "x"}, block=True)
    assert dv.pull("a", block=True) == [5] * len(rc)
    assert dv.pull(["a", "b"], block=True) == [[5, "x"]] * len(rc)
    dv["c"] = [1, 2]
    assert dv["c"] == [[1, 2]] * len(rc)
    assert rc[0]["a"] == 5
    with pytest.raises(TypeError, match="dict"):
        dv.push([1, 2])
    with pytest.raises(ipp.CompositeError) as info:
        dv.pull("never_defined_anywhere", block=True)
    assert info.value.elist[0].ename == "NameError"


def test_pushed_names_visible_to_interactive_functions(rc):
    dv = rc[:]
    dv.push({"offset": 100}, block=True)

    @ipp.interactive
    def add_offset(x):
        return x + offset  # noqa: F821 - defined on the engines

    assert dv.apply_sync(add_offset, 1) == [101] * len(rc)
    assert dv.map_sync(add_offset, [1, 2]) == [101, 102]


def test_reference(rc):
    dv = rc[:]
    dv.push({"ref_value": 7}, block=True)
    assert dv.apply_sync(lambda v: v * 2, ipp.Reference("ref_value")) == [14] * len(rc)


def test_execute_and_run(rc, tmp_path):
    dv = rc[:]
    ar = dv.execute("executed = 3 * 3")
    ar.get(30)
    assert dv["executed"] == [9] * len(rc)
    script = tmp_path / "script.py"
    script.write_text("from_script = 'yes'\n")
    dv.run(str(script), block=True)
    assert dv["from_script"] == ["yes"] * len(rc)
    with pytest.raises(ipp.CompositeError) as info:
        dv.execute("1/0", block=True)
    assert info.value.elist[0].ename == "ZeroDivisionError"
    with pytest.raises(FileNotFoundError):
        dv.run(str(tmp_path / "missing.py"))


def test_scatter_gather_lists(rc):
    dv = rc[:]
    data = list(range(10))
    dv.scatter("part", data, block=True)
    parts = dv["part"]
    assert sum(parts, []) == data
    assert max(len(p) for p in parts) - min(len(p) for p in parts) <= 1
    assert dv.gather("part", block=True) == data
    dv.scatter("one", [42] * len(rc), flatten=True, block=True)
    assert dv["one"] == [42] * len(rc)


def test_scatter_gather_numpy(rc):
    np = pytest.importorskip("numpy")
    dv = rc[:]
    arr = np.arange(300_000, dtype="float64")  # big enough to travel as zero-copy buffers
    dv.scatter("chunk", arr, block=True)
    back = dv.gather("chunk", block=True)
    assert isinstance(back, np.ndarray)
    assert np.array_equal(back, arr)
    sums = dv.apply_sync(ipp.interactive(lambda: float(chunk.sum())))  # noqa: F821
    assert sum(sums) == float(arr.sum())


def test_targets_flag_and_temp_flags(rc):
    dv = rc.direct_view("all")
    with dv.temp_flags(targets=rc.ids[0], block=True):
        assert dv.apply(lambda: 1) == 1
    assert dv.targets == "all"
    dv.set_flags(targets=rc.ids[:1])
    assert dv.apply_sync(lambda: 2) == [2]
    with pytest.raises(KeyError, match="Invalid name"):
        dv.set_flags(nonsense=1)


def test_remote_and_parallel_decorators(rc):
    dv = rc[:]

    @dv.remote(block=True)
    def getpid():
        import os

        return os.getpid()

    pids = getpid()
    assert len(set(pids)) == len(rc)

    @dv.parallel(block=True)
    def doubled(xs):
        return [2 * x for x in xs]

    assert doubled(range(9)) == [2 * x for x in range(9)]

    @dv.parallel(block=True)
    def inc(x):
        return x + 1

    assert inc.map(range(5)) == [1, 2, 3, 4, 5]


def test_apply_with_flags(rc):
    dv = rc[:]
    assert dv.apply_with_flags(square, args=(3,), block=True) == [9] * len(rc)
    assert dv.apply_with_flags(square, (2,), targets=rc.ids[0], block=True) == 4


def test_sync_imports(rc):
    dv = rc[:]
    with dv.sync_imports(quiet=True):
        import json  # noqa: F401
    assert dv.apply_sync(ipp.interactive(lambda: json.dumps([1]))) == ["[1]"] * len(rc)  # noqa: F821


def test_module_level_decorators_and_range_scatter(rc):
    dv = rc[:]

    @ipp.remote(dv, block=True)
    def one():
        return 1

    @ipp.parallel(dv, block=True)
    def lengths(chunk):
        return len(chunk)

    assert one() == [1] * len(rc)
    assert sum(lengths(list(range(10)))) == 10
    dv.scatter("r", range(7), block=True)
    assert all(isinstance(piece, list) for piece in dv["r"])
    assert dv.gather("r", block=True) == list(range(7))
