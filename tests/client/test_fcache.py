"""The function-pickle cache never serves a stale pickle."""

from __future__ import annotations

import pickle

from ipcluster.client import fcache

counter = 1
mutable = [1]


def uses_counter():
    return counter


def uses_mutable():
    return mutable[0]


def test_cached_until_a_global_changes():
    global counter
    first = fcache.function_pickle(uses_counter)
    assert fcache.function_pickle(uses_counter) is first
    counter = 2
    try:
        assert fcache.function_pickle(uses_counter) is not first
    finally:
        counter = 1


def test_mutable_globals_and_closures_are_never_cached():
    assert fcache.function_pickle(uses_mutable) is not fcache.function_pickle(uses_mutable)
    box = [1]

    def closure():
        return box

    assert fcache._fingerprint(closure) is None
    n = 3

    def scalar_closure():
        return n

    assert fcache._fingerprint(scalar_closure) is not None


def test_int_and_float_are_different_values():
    assert fcache._key(1) != fcache._key(1.0) != fcache._key(True)


def test_pickle_round_trips():
    f = pickle.loads(fcache.function_pickle(len))
    assert f([1, 2]) == 2
