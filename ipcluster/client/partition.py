"""Splitting sequences across engines and joining the pieces back: scatter, gather and map chunks.

Partitions are contiguous and balanced (the first ``n % parts`` pieces get one extra item), so a gather of
a scatter gives back the original order. numpy arrays are sliced, never copied, so their chunks travel as
zero-copy buffers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def is_array(obj: Any) -> bool:
    """True for numpy arrays (checked without importing numpy)."""
    return type(obj).__module__ == "numpy" and hasattr(obj, "shape") and hasattr(obj, "dtype")


def as_sequence(obj: Any, name: str = "sequence") -> Sequence[Any]:
    """A sliceable sequence: lists, tuples, ranges, strings and arrays stay as they are; iterables are listed."""
    if isinstance(obj, (list, tuple, range, str, bytes)) or is_array(obj):
        return obj
    if isinstance(obj, dict) or not isinstance(obj, Iterable):
        raise TypeError(f"{name} must be a sequence (list, tuple, range, array), not {type(obj).__name__}")
    return list(obj)


def partition_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (lo, hi) ranges covering ``range(n)``, sizes differing by at most one."""
    if parts < 1:
        raise ValueError(f"cannot split into {parts} parts")
    base, extra = divmod(n, parts)
    bounds = []
    lo = 0
    for p in range(parts):
        hi = lo + base + (1 if p < extra else 0)
        bounds.append((lo, hi))
        lo = hi
    return bounds


def partition(seq: Sequence[Any], parts: int) -> list[Sequence[Any]]:
    """Split ``seq`` into ``parts`` balanced contiguous slices (some may be empty)."""
    return [seq[lo:hi] for lo, hi in partition_bounds(len(seq), parts)]


def chunk_bounds(n: int, chunksize: int) -> list[tuple[int, int]]:
    """(lo, hi) ranges of at most ``chunksize`` items each, covering ``range(n)`` in order."""
    if chunksize < 1:
        raise ValueError(f"chunksize must be a positive integer, not {chunksize!r}")
    return [(lo, min(lo + chunksize, n)) for lo in range(0, n, chunksize)]


def check_lengths(seqs: Sequence[Sequence[Any]], shortest: bool = False) -> int:
    """The common length of the sequences of a map; a ValueError naming the lengths otherwise.

    With ``shortest`` (an elementwise map), unequal lengths are fine and the shortest wins, as with the
    builtin ``map`` and ipyparallel's ``view.map``.
    """
    if not seqs:
        raise ValueError("map needs at least one sequence")
    lengths = [len(s) for s in seqs]
    if shortest:
        return min(lengths)
    if len(set(lengths)) > 1:
        raise ValueError(f"all sequences given to map must have the same length, got lengths {lengths}")
    return lengths[0]


def join_partitions(parts: Sequence[Any]) -> Any:
    """Concatenate pieces: arrays with numpy, lists/tuples into one list, strings into one string.

    Anything else (scalars returned by a parallel function) comes back as the list of pieces.
    """
    if not parts:
        return []
    first = parts[0]
    if is_array(first):
        import numpy

        return numpy.concatenate(parts)
    if isinstance(first, (list, tuple, range)):
        out: list[Any] = []
        for part in parts:
            out.extend(part)
        return out
    if isinstance(first, str) and all(isinstance(p, str) for p in parts):
        return "".join(parts)
    return list(parts)
