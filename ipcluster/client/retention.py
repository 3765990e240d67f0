"""What the Client keeps of finished tasks, bounded so its memory stays flat over millions of tasks.

``rc.results``, ``rc.metadata`` and the replies behind them keep the ``max_results`` most recently
submitted tasks, plus every task whose AsyncResult is still alive (pending tasks included: the client
holds their AsyncResult until they finish). An older task is dropped once its AsyncResult has been
garbage collected. ``rc.history`` keeps every msg_id, packed as 8-byte counters.
"""

from __future__ import annotations

import weakref
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, overload


class History(Sequence[str]):
    """The msg_ids a client submitted, in order: a list-like sequence that costs 8 bytes per task.

    The client's own ids are ``<prefix><hex counter>``; only the counter is stored. Any other id is kept
    as a string on the side.
    """

    def __init__(self, prefix: str, items: Iterable[str] = ()) -> None:
        self._prefix = prefix
        self._n = len(prefix)
        self._counters = array("Q")
        self._others: dict[int, str] = {}  # position → an id that is not <prefix><hex>
        self.extend(items)

    def append(self, msg_id: str) -> None:
        if msg_id.startswith(self._prefix):
            tail = msg_id[self._n :]
            try:
                value = int(tail, 16)
            except ValueError:
                value = 0
            if value > 0 and f"{value:x}" == tail:
                self._counters.append(value)
                return
        self._others[len(self._counters)] = msg_id
        self._counters.append(0)

    def extend(self, msg_ids: Iterable[str]) -> None:
        for msg_id in msg_ids:
            self.append(msg_id)

    def clear(self) -> None:
        self._counters = array("Q")
        self._others.clear()

    def _at(self, i: int) -> str:
        value = self._counters[i]
        return f"{self._prefix}{value:x}" if value else self._others[i]

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: int | slice) -> str | list[str]:
        n = len(self._counters)
        if isinstance(index, slice):
            return [self._at(i) for i in range(*index.indices(n))]
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("history index out of range")
        return self._at(index)

    def __len__(self) -> int:
        return len(self._counters)

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self._counters)):
            yield self._at(i)

    def __contains__(self, msg_id: object) -> bool:
        if not isinstance(msg_id, str):
            return False
        if msg_id.startswith(self._prefix):
            tail = msg_id[self._n :]
            try:
                value = int(tail, 16)
            except ValueError:
                value = 0
            if value > 0 and f"{value:x}" == tail:
                return value in self._counters
        return msg_id in self._others.values()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, History)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=False))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"History({list(self)!r})" if len(self) <= 20 else f"<History of {len(self)} msg_ids>"


class Retention:
    """Drops the client's per-task state (metadata, reply, unpickled result) beyond ``limit`` tasks.

    ``track`` runs in the submitting thread once per AsyncResult; the drops are single dict pops, safe
    beside the IO thread's writes.
    """

    def __init__(self, limit: int | None, stores: Sequence[dict[str, Any]]) -> None:
        if limit is not None and limit < 0:
            raise ValueError(f"max_results must be >= 0 or None (keep everything), not {limit!r}")
        self.limit = limit
        self._stores = tuple(stores)
        self._order: deque[tuple[str, weakref.ref]] = deque()
        # id(weakref to a live AsyncResult) → (that weakref, its expired msg_ids); keyed by id because a
        # dead weakref that was never hashed cannot be hashed
        self._pinned: dict[int, tuple[weakref.ref, list[str]]] = {}
        self._gone = self._make_gone(self._pinned, self._stores)

    @staticmethod
    def _make_gone(
        pinned: dict[int, tuple[weakref.ref, list[str]]], stores: tuple[dict[str, Any], ...]
    ) -> Callable[[weakref.ref], None]:
        # a closure over the stores only: the weakref callback must not keep the Client alive
        def gone(ref: weakref.ref) -> None:
            entry = pinned.pop(id(ref), None)
            if entry is not None:
                for msg_id in entry[1]:
                    for store in stores:
                        store.pop(msg_id, None)

        return gone

    def track(self, ar: Any, msg_ids: Iterable[str]) -> None:
        """Remember newly submitted tasks, and expire the oldest beyond the limit."""
        if self.limit is None:
            return
        ref = weakref.ref(ar, self._gone)
        order = self._order
        for msg_id in msg_ids:
            order.append((msg_id, ref))
        while len(order) > self.limit:
            msg_id, old = order.popleft()
            alive = old()  # held while pinning, so its callback cannot run in between
            if alive is not None:
                self._pinned.setdefault(id(old), (old, []))[1].append(msg_id)
                del alive
            else:
                for store in self._stores:
                    store.pop(msg_id, None)

    def __len__(self) -> int:
        return len(self._order) + sum(len(v[1]) for v in self._pinned.values())
