"""Partitioning for scatter/gather/map: balanced, contiguous, order-preserving, zero-copy for arrays."""

from __future__ import annotations

import pytest

from ipcluster.client.partition import (
    as_sequence,
    check_lengths,
    chunk_bounds,
    join_partitions,
    partition,
    partition_bounds,
)


@pytest.mark.parametrize("n,parts", [(0, 3), (1, 3), (10, 3), (9, 3), (7, 1), (5, 8)])
def test_partitions_are_balanced_and_cover_everything(n, parts):
    pieces = partition(list(range(n)), parts)
    assert len(pieces) == parts
    assert sum(pieces, []) == list(range(n))
    sizes = [len(p) for p in pieces]
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)  # the extra items go to the first engines


def test_partition_bounds_errors():
    with pytest.raises(ValueError):
        partition_bounds(3, 0)


def test_chunks():
    assert chunk_bounds(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert chunk_bounds(0, 3) == []
    with pytest.raises(ValueError, match="chunksize"):
        chunk_bounds(3, 0)


def test_join_partitions():
    assert join_partitions([[1, 2], [3], []]) == [1, 2, 3]
    assert join_partitions([(1,), (2, 3)]) == [1, 2, 3]
    assert join_partitions(["ab", "c"]) == "abc"
    assert join_partitions([1, 2, 3]) == [1, 2, 3]  # scalars: one per partition
    assert join_partitions([]) == []


def test_numpy_slices_are_views_and_join_back():
    np = pytest.importorskip("numpy")
    arr = np.arange(10)
    pieces = partition(arr, 3)
    assert all(p.base is arr for p in pieces)
    assert np.array_equal(join_partitions(pieces), arr)


def test_sequences_and_lengths():
    assert as_sequence(range(3)) == range(3)
    assert as_sequence(x for x in range(3)) == [0, 1, 2]
    with pytest.raises(TypeError, match="sequence"):
        as_sequence(5)
    with pytest.raises(TypeError):
        as_sequence({"a": 1})
    assert check_lengths([[1, 2], "ab"]) == 2
    with pytest.raises(ValueError, match="lengths"):
        check_lengths([[1], [1, 2]])
