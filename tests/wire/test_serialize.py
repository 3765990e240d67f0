"""Objects across the wire: cloudpickle for code, pickle-5 out-of-band buffers for big data."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ipcluster import wire
from ipcluster.error import SerializationError


def test_lambdas_and_closures_round_trip() -> None:
    offset = 10

    def add(x: int) -> int:
        return x + offset

    frames = wire.pack_apply_message(add, (5,), {})
    f, args, kwargs = wire.unpack_apply_message(frames)
    assert f(*args, **kwargs) == 15
    g, args, kwargs = wire.unpack_apply_message(wire.pack_apply_message(lambda a, b=2: a * b, (3,), {"b": 4}))
    assert g(*args, **kwargs) == 12


def test_large_numpy_array_travels_out_of_band_without_a_copy_into_the_pickle() -> None:
    arr = np.arange(1_000_000, dtype=np.float64)
    frames = wire.serialize_object(arr)
    assert len(frames) == 2
    assert len(frames[0]) < 1000  # the pickle holds only metadata
    assert memoryview(frames[1]).nbytes == arr.nbytes
    assert np.shares_memory(np.frombuffer(frames[1], dtype=np.float64), arr)
    back = wire.deserialize_object(frames)
    np.testing.assert_array_equal(back, arr)


def test_small_objects_stay_in_band() -> None:
    frames = wire.serialize_object({"a": np.arange(10), "b": b"x" * 100})
    assert len(frames) == 1


def test_function_pickle_can_be_reused_across_calls() -> None:
    f_frame = wire.serialize_function(lambda x: x * 2)
    cache = wire.FunctionCache()
    results = []
    for i in range(5):
        f, args, kwargs = wire.unpack_apply_message(
            wire.pack_apply_message(None, (i,), {}, f_frame=f_frame), cache
        )
        results.append(f(*args))
    assert results == [0, 2, 4, 6, 8]


def test_unpicklable_argument_is_a_local_error_that_names_it() -> None:
    lock = threading.Lock()
    with pytest.raises(SerializationError, match="lock"):
        wire.pack_apply_message(lambda x: x, (lock,), {})


def test_unpicklable_function_is_named() -> None:
    lock = threading.Lock()

    def uses_lock() -> bool:
        return lock.locked()

    with pytest.raises(SerializationError, match="uses_lock"):
        wire.serialize_function(uses_lock)


def test_interactive_functions_see_the_target_namespace() -> None:
    @wire.interactive
    def read_a() -> int:
        return a  # type: ignore[name-defined]  # noqa: F821

    f, _, _ = wire.unpack_apply_message(wire.pack_apply_message(read_a, (), {}))
    namespace: dict = {"a": 42}
    assert wire.bind_to_namespace(f, namespace)() == 42


def test_interactive_push_helper_updates_the_namespace() -> None:
    @wire.interactive
    def push(ns: dict) -> None:
        globals().update(ns)

    f, args, _ = wire.unpack_apply_message(wire.pack_apply_message(push, ({"b": 7},), {}))
    namespace: dict = {}
    wire.bind_to_namespace(f, namespace)(*args)
    assert namespace["b"] == 7


def test_references_resolve_in_the_namespace() -> None:
    args, kwargs = wire.resolve_references(
        (wire.Reference("a"), 1), {"k": wire.Reference("b")}, {"a": 5, "b": 6}
    )
    assert args == (5, 1) and kwargs == {"k": 6}
    with pytest.raises(NameError, match="'zz' is not defined on this engine"):
        wire.resolve_references((wire.Reference("zz"),), {}, {})
