"""AsyncResult: the handle on submitted tasks; a concurrent.futures.Future that is also awaitable.

The client's IO thread stores each raw reply in its slot and resolves the future when the last one is in;
results are unpickled lazily, in the thread that asks for them (``get()``/``result()``), so the IO thread
never runs user pickles and a result nobody reads is never unpickled.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ipcluster import error

from .metadata import ALL_KEYS, Metadata
from .outputs import print_outputs
from .partition import join_partitions

if TYPE_CHECKING:
    from .client import Client

_UNSET: Any = object()
# One lock for unpacking every result (rarely contended) and one condition for per-task progress (used
# only while someone iterates): a task then costs no lock objects of its own beyond the Future's.
_UNPACK_LOCK = threading.RLock()
_PROGRESS = threading.Condition()


def _forever(timeout: float | None) -> bool:
    return timeout is None or timeout < 0


def add_remote_traceback(exc: BaseException) -> BaseException:
    """Attach the engine's traceback as a note, so an uncaught RemoteError prints like a local one."""
    if not hasattr(exc, "add_note") or getattr(exc, "_ipcluster_noted", False):
        return exc
    errors = exc.elist if isinstance(exc, error.CompositeError) else [exc]
    for err in errors[: error.CompositeError.tb_limit]:
        tb = getattr(err, "traceback", "")
        if tb:
            engine = getattr(err, "engine_info", {}).get("engine_id")
            exc.add_note(f"\n[Engine Exception on engine {engine}]\n{tb.rstrip()}")
    if isinstance(exc, error.CompositeError) and len(errors) > error.CompositeError.tb_limit:
        exc.add_note(f".... {len(errors) - error.CompositeError.tb_limit} more exceptions ...")
    exc._ipcluster_noted = True  # type: ignore[attr-defined]
    return exc


class AsyncResult(concurrent.futures.Future):
    """The result of one or more tasks (one msg_id each), available later.

    ``get(timeout)`` returns it or raises the remote error; ``wait``, ``ready``, ``successful`` poll;
    ``metadata`` holds timestamps and output. It works with ``concurrent.futures.wait/as_completed`` and
    with ``await`` in asyncio.
    """

    def __init__(
        self,
        client: Client,
        msg_ids: list[str],
        fname: str = "unknown",
        targets: Any = None,
        single: bool = False,
        tracker: Any = None,
        return_exceptions: bool = False,
    ) -> None:
        super().__init__()
        self.set_running_or_notify_cancel()
        self._client = client
        self._msg_ids = list(msg_ids)
        self._fname = fname
        self._targets = targets
        self._single = single
        self._tracker = tracker
        self._return_exceptions = return_exceptions
        n = len(self._msg_ids)
        self._replies: list[Any] = [None] * n
        self._values: list[Any] = [_UNSET] * n
        self._remaining = n
        self._arrival: list[int] = []
        self._watchers = 0
        self._outcome: Any = _UNSET
        if n == 0:
            super().set_result(_UNSET)

    # -- filled by the client's IO thread ------------------------------------------------------------

    def _deliver(self, index: int, reply: dict[str, Any]) -> None:
        self._replies[index] = reply
        self._arrival.append(index)
        self._remaining -= 1
        if self._watchers:
            with _PROGRESS:
                _PROGRESS.notify_all()
        if self._remaining == 0 and not self.done():
            super().set_result(_UNSET)

    def _fail(self, exc: BaseException) -> None:
        if not self.done():
            super().set_exception(exc)
            with _PROGRESS:
                _PROGRESS.notify_all()

    # -- unpacking (user threads) --------------------------------------------------------------------

    def _child_value(self, index: int) -> Any:
        value = self._values[index]
        if value is _UNSET:
            with _UNPACK_LOCK:
                value = self._values[index]
                if value is _UNSET:
                    value = self._client._unpack_reply(self._replies[index], self._msg_ids[index])
                    self._values[index] = value
        return value

    def _reconstruct(self, results: list[Any]) -> Any:
        return results[0] if self._single else results

    def _compute_outcome(self) -> tuple[bool, Any]:
        results = [self._child_value(i) for i in range(len(self._msg_ids))]
        if self._single:
            r = results[0] if results else None
            if isinstance(r, BaseException) and not self._return_exceptions:
                return False, add_remote_traceback(r)
            return True, r
        if not self._return_exceptions:
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors:
                if len(errors) == 1 and len(results) == 1:
                    return False, add_remote_traceback(errors[0])
                elist = [e if isinstance(e, error.RemoteError) else _as_remote(e) for e in errors]
                composite = error.CompositeError(
                    f"one or more exceptions from call to method: {self._fname}", elist
                )
                return False, add_remote_traceback(composite)
        return True, self._reconstruct(results)

    def _get_outcome(self) -> tuple[bool, Any]:
        if self._outcome is _UNSET:
            with _UNPACK_LOCK:
                if self._outcome is _UNSET:
                    self._outcome = self._compute_outcome()
        return self._outcome

    def _wait_done(self, timeout: float | None) -> bool:
        if self.done():
            return True
        try:
            concurrent.futures.Future.exception(self, None if _forever(timeout) else timeout)
        except concurrent.futures.TimeoutError:
            return False
        except concurrent.futures.CancelledError:
            return True
        return True

    # -- the Future API ------------------------------------------------------------------------------

    def result(self, timeout: float | None = None) -> Any:
        """The result (blocking up to ``timeout`` s); raises the remote error, or TimeoutError."""
        if not self._wait_done(timeout):
            raise error.TimeoutError(f"Result not ready after {timeout} s.")
        concurrent.futures.Future.result(self, 0)  # raises a local failure (send error, controller gone)
        ok, value = self._get_outcome()
        if ok:
            return value
        raise value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self._wait_done(timeout):
            raise error.TimeoutError(f"Result not ready after {timeout} s.")
        exc = concurrent.futures.Future.exception(self, 0)
        if exc is not None:
            return exc
        ok, value = self._get_outcome()
        return None if ok else value

    def cancel(self) -> bool:
        """Tasks already sent cannot be cancelled like local futures: use ``abort()``."""
        return False

    def __await__(self) -> Any:
        return asyncio.wrap_future(self).__await__()

    # -- the ipyparallel API -------------------------------------------------------------------------

    def get(self, timeout: float | None = -1) -> Any:
        """Wait (``timeout`` s; -1 or None: forever) and return the result, or raise the remote error."""
        if not self._wait_done(timeout):
            raise error.TimeoutError("Result not ready.")
        return self.result(0)

    def get_dict(self, timeout: float | None = -1) -> dict[int, Any]:
        """The results keyed by engine id (one task per engine, as from a DirectView apply)."""
        results = self.get(timeout)
        if self._single:
            results = [results]
        engine_ids = [md["engine_id"] for md in (self.metadata if not self._single else [self.metadata])]
        for eid in set(engine_ids):
            if engine_ids.count(eid) > 1:
                raise ValueError(f"cannot build a dict: {engine_ids.count(eid)} tasks ran on engine {eid}")
        return dict(zip(engine_ids, results, strict=False))

    @property
    def r(self) -> Any:
        """The result, waiting for it: ``get()``."""
        return self.get()

    @property
    def result_dict(self) -> dict[int, Any]:
        return self.get_dict()

    def timedelta(self, start: Any, end: Any, start_key: Any = min, end_key: Any = max) -> float:
        """Seconds between two timestamps or lists of them (earliest start to latest end by default)."""
        if not isinstance(start, datetime):
            start = start_key(start)
        if not isinstance(end, datetime):
            end = end_key(end)
        return (end - start).total_seconds()

    def wait(self, timeout: float | None = -1) -> bool:
        """Wait up to ``timeout`` s (-1/None: forever); True when the result is ready."""
        return self._wait_done(timeout)

    def ready(self) -> bool:
        return self.done()

    def successful(self) -> bool:
        """Whether the tasks finished without error; asks only once ready (AssertionError before)."""
        assert self.ready(), "the result is not ready yet: wait() first"
        if concurrent.futures.Future.exception(self, 0) is not None:
            return False
        return self._get_outcome()[0]

    @property
    def msg_ids(self) -> list[str]:
        return list(self._msg_ids)

    @property
    def msg_id(self) -> str:
        if len(self._msg_ids) != 1:
            raise AttributeError(f"this AsyncResult has {len(self._msg_ids)} msg_ids: use msg_ids")
        return self._msg_ids[0]

    @property
    def metadata(self) -> Any:
        mds = [self._client.metadata.get(m) or Metadata(msg_id=m) for m in self._msg_ids]
        return mds[0] if self._single else mds

    @property
    def progress(self) -> int:
        """How many of the tasks are done."""
        return len(self._msg_ids) - self._remaining

    @property
    def sent(self) -> bool:
        return self._tracker is None or self._tracker.done

    def wait_for_send(self, timeout: float | None = -1) -> None:
        if self._tracker is not None:
            self._tracker.wait(None if _forever(timeout) else timeout)

    def _timestamps(self, key: str) -> list[datetime]:
        out = []
        for m in self._msg_ids:
            md = self._client.metadata.get(m)
            if md is not None and md.get(key) is not None:
                out.append(md[key])
        return out

    @property
    def elapsed(self) -> float:
        """Seconds since submission: until now if not ready, until the last reply otherwise."""
        if self.ready():
            return self.wall_time
        submitted = self._timestamps("submitted")
        if not submitted:
            return 0.0
        return (datetime.now(submitted[0].tzinfo) - min(submitted)).total_seconds()

    @property
    def serial_time(self) -> float:
        """Computation time summed over the tasks (completed - started on each engine), in seconds."""
        total = 0.0
        for m in self._msg_ids:
            md = self._client.metadata.get(m)
            if md is not None and md.get("started") and md.get("completed"):
                total += (md["completed"] - md["started"]).total_seconds()
        return total

    @property
    def wall_time(self) -> float:
        """Seconds from the first submission to the last reply received."""
        submitted, received = self._timestamps("submitted"), self._timestamps("received")
        if not submitted or not received:
            return 0.0
        return (max(received) - min(submitted)).total_seconds()

    def abort(self) -> None:
        """Ask the engines to drop these tasks if they have not started yet."""
        assert not self.ready(), "can't abort: the tasks are already done"
        self._client.abort(self._msg_ids, targets=self._targets, block=True)

    def display_outputs(self, groupby: str = "type") -> None:
        """Print what the tasks wrote, prefixed ``[stdout:<engine>]``, then the value of an execute's
        final expression as ``Out[<engine>:<n>]: value`` (groupby: type, engine or order)."""
        self._client._wait_outputs(self._msg_ids, timeout=2.0)
        print_outputs([self._client.metadata.get(m) or Metadata(msg_id=m) for m in self._msg_ids], groupby)

    def wait_for_output(self, timeout: float | None = -1) -> bool:
        """Wait for the tasks and all their output (ipyparallel's name): output is complete once a task is
        finished, so this is ``wait(timeout)``."""
        return self.wait(timeout)

    def wait_interactive(self, interval: float = 0.1, timeout: float = -1) -> None:
        """Wait, printing progress on one line."""
        start = time.monotonic()
        while not self.ready():
            if not _forever(timeout) and time.monotonic() - start > timeout:
                break
            print(
                f"\r{self.progress}/{len(self._msg_ids)} tasks finished after {self.elapsed:4.0f} s", end=""
            )
            sys.stdout.flush()
            self.wait(interval)
        print(f"\r{self.progress}/{len(self._msg_ids)} tasks finished after {self.elapsed:4.0f} s: done")

    # -- per-task access, iteration ------------------------------------------------------------------

    def _wait_child(self, index: int) -> None:
        if self._replies[index] is not None or self.done():
            return
        with _PROGRESS:
            self._watchers += 1
            try:
                while self._replies[index] is None and not self.done():
                    _PROGRESS.wait(0.5)
            finally:
                self._watchers -= 1

    def _next_arrival(self, seen: int) -> int | None:
        """Index of the ``seen``-th reply to arrive, waiting for it; None once all have arrived."""
        if seen >= len(self._msg_ids):
            return None
        with _PROGRESS:
            self._watchers += 1
            try:
                while len(self._arrival) <= seen and not self.done():
                    _PROGRESS.wait(0.5)
            finally:
                self._watchers -= 1
        if len(self._arrival) <= seen:
            concurrent.futures.Future.result(self, 0)
        return self._arrival[seen]

    def _child_result(self, index: int) -> Any:
        self._wait_child(index)
        if self._replies[index] is None:
            concurrent.futures.Future.result(self, 0)
        value = self._child_value(index)
        if isinstance(value, BaseException) and not self._return_exceptions:
            raise add_remote_traceback(value)
        return value

    def __iter__(self) -> Iterator[Any]:
        if self._single:
            raise TypeError("an AsyncResult with a single result is not iterable: use get()")
        for i in range(len(self._msg_ids)):
            yield self._child_result(i)

    def __len__(self) -> int:
        return len(self._msg_ids)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            mds = [self._client.metadata.get(m) or Metadata(msg_id=m) for m in self._msg_ids]
            if key not in mds[0]:
                raise KeyError(key)
            values = [md[key] for md in mds]
            return values[0] if self._single else values
        return self.get()[key]

    def __getattr__(self, key: str) -> Any:
        if key in ALL_KEYS:
            return self[key]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {key!r}")

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(ALL_KEYS))

    def __repr__(self) -> str:
        state = "finished" if self.ready() else "pending"
        return f"<{type(self).__name__}({self._fname}): {state}>"


def _as_remote(exc: BaseException) -> error.RemoteError:
    info = getattr(exc, "engine_info", {}) or {}
    return error.RemoteError(type(exc).__name__, str(exc), getattr(exc, "traceback", ""), info)


class AsyncMapResult(AsyncResult):
    """The result of a map: one task per chunk, joined back into one sequence.

    Iterating yields each element as its chunk arrives: in order (``ordered=True``) or in the order the
    chunks finish. ``get()`` always returns the elements in order.
    """

    def __init__(
        self,
        client: Client,
        msg_ids: list[str],
        fname: str = "unknown",
        targets: Any = None,
        ordered: bool = True,
        tracker: Any = None,
        return_exceptions: bool = False,
        elementwise: bool = True,
        length: int | None = None,
    ) -> None:
        self._ordered = ordered
        self._elementwise = elementwise
        self._length = length
        super().__init__(client, msg_ids, fname, targets, False, tracker, return_exceptions)

    def _reconstruct(self, results: list[Any]) -> Any:
        if self._return_exceptions:
            out: list[Any] = []
            for r in results:
                if isinstance(r, BaseException) and self._elementwise:
                    out.append(r)
                elif isinstance(r, (list, tuple)):
                    out.extend(r)
                else:
                    out.append(r)
            return out
        return join_partitions(results)

    def _chunk_items(self, index: int) -> list[Any]:
        value = self._child_result(index)
        if isinstance(value, BaseException):
            return [value]
        if self._elementwise or isinstance(value, (list, tuple)):
            return list(value)
        try:
            return list(value)
        except TypeError:
            return [value]

    def __iter__(self) -> Iterator[Any]:
        if self._ordered:
            for i in range(len(self._msg_ids)):
                yield from self._chunk_items(i)
        else:
            seen = 0
            while True:
                index = self._next_arrival(seen)
                if index is None:
                    return
                seen += 1
                yield from self._chunk_items(index)

    def __len__(self) -> int:
        return self._length if self._length is not None else len(self._msg_ids)


class AsyncHubResult(AsyncResult):
    """Results fetched from the controller's task records (tasks submitted by another client)."""
