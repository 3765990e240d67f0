"""Views: DirectView (run on exactly these engines) and LoadBalancedView (let the scheduler choose).

Every call returns an AsyncResult, or its value when the view (or the call) blocks. Flags (``block``,
``track``, ``targets``, and the load-balancing ones) are set with ``set_flags``, for one block with
``temp_flags``, or for one call with ``apply_with_flags``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ipcluster import wire

from . import io as clientio
from .asyncresult import AsyncMapResult, AsyncResult
from .remotefunction import ParallelFunction, RemoteFunction, make_mapper

if TYPE_CHECKING:
    from .client import Client


class View:
    """What DirectView and LoadBalancedView share: flags, apply/map families, decorators, waiting."""

    _flag_names: tuple[str, ...] = ("targets", "block", "track")
    _load_balanced = False

    def __init__(self, client: Client, targets: Any = None, **flags: Any) -> None:
        self.client = client
        self.block = client.block
        self.track = False
        self._targets = targets
        self.history: list[str] = []
        self.outstanding_ars: list[AsyncResult] = []
        self.set_flags(**flags)

    # -- flags ---------------------------------------------------------------------------------------

    @property
    def targets(self) -> Any:
        return self._targets

    @targets.setter
    def targets(self, value: Any) -> None:
        self._targets = value

    def set_flags(self, **kwargs: Any) -> None:
        """Set flags for every later call (``block``, ``track``, ``targets``, ...)."""
        for name, value in kwargs.items():
            if name not in self._flag_names:
                raise KeyError(
                    f"Invalid name: {name!r}; the flags of {type(self).__name__} are {list(self._flag_names)}"
                )
            setattr(self, name, value)

    @contextlib.contextmanager
    def temp_flags(self, **kwargs: Any) -> Iterator[View]:
        """Set flags for the duration of a ``with`` block."""
        saved = {name: getattr(self, name) for name in kwargs}
        self.set_flags(**kwargs)
        try:
            yield self
        finally:
            for name, value in saved.items():
                setattr(self, name, value)

    # -- apply ---------------------------------------------------------------------------------------

    def apply(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``f(*args, **kwargs)`` remotely; blocks when ``self.block``."""
        return self._really_apply(f, args, kwargs)

    def apply_async(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> AsyncResult:
        """Call ``f(*args, **kwargs)`` remotely and return the AsyncResult at once."""
        return self._really_apply(f, args, kwargs, block=False)

    def apply_sync(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``f(*args, **kwargs)`` remotely and wait for the result."""
        return self._really_apply(f, args, kwargs, block=True)

    def apply_with_flags(
        self,
        f: Callable[..., Any],
        args: Any = None,
        kwargs: Any = None,
        block: bool | None = None,
        track: bool | None = None,
        **flags: Any,
    ) -> Any:
        """``apply`` with flags for this one call (the seed's form)."""
        with self.temp_flags(**flags):
            return self._really_apply(f, tuple(args or ()), dict(kwargs or {}), block=block, track=track)

    def _really_apply(
        self,
        f: Any,
        args: tuple,
        kwargs: dict,
        block: bool | None = None,
        track: bool | None = None,
        targets: Any = None,
    ) -> Any:
        raise NotImplementedError

    def _send(self, channel: bytes, block: bool, submit: Callable[[], AsyncResult]) -> AsyncResult:
        """``submit()`` the call and note it in the history; a blocking one sends and receives in this
        thread, on a sync lane (client/lanes.py), when the client can: no hand-off to the IO thread on the
        way out or back. Finish with ``_value_or_ar``."""

        def submit_and_note() -> AsyncResult:
            ar = submit()
            self.history.extend(ar.msg_ids)
            return ar

        io = self.client._io
        if block and io is not None:
            return io.call_blocking(channel, submit_and_note)
        return submit_and_note()

    def _finish_call(self, ar: AsyncResult, block: bool | None) -> Any:
        self.history.extend(ar.msg_ids)
        return self._value_or_ar(ar, block)

    def _value_or_ar(self, ar: AsyncResult, block: bool | None) -> Any:
        if self.block if block is None else block:
            return ar.get()
        return ar

    # -- map -----------------------------------------------------------------------------------------

    def map(self, f: Callable[..., Any], *sequences: Any, **kwargs: Any) -> Any:
        """Parallel ``map(f, *sequences)``; blocks when ``self.block`` (or ``block=True``)."""
        block = kwargs.pop("block", None)
        with self.temp_flags(block=self.block if block is None else block):
            return self._map_partitions(f, sequences, elementwise=True, **kwargs)

    def map_async(self, f: Callable[..., Any], *sequences: Any, **kwargs: Any) -> AsyncMapResult:
        kwargs["block"] = False
        return self.map(f, *sequences, **kwargs)

    def map_sync(self, f: Callable[..., Any], *sequences: Any, **kwargs: Any) -> list[Any]:
        kwargs["block"] = True
        return self.map(f, *sequences, **kwargs)

    def imap(
        self,
        f: Callable[..., Any],
        *sequences: Any,
        ordered: bool = True,
        max_outstanding: Any = "auto",
        return_exceptions: bool = False,
    ) -> Iterator[Any]:
        """Lazy map over (possibly endless) iterables, keeping at most ``max_outstanding`` tasks in flight."""
        if max_outstanding == "auto":
            max_outstanding = 2 * max(1, len(self.client))
        iterators = [iter(s) for s in sequences]
        mapper = make_mapper(f)
        return _imap(self, mapper, iterators, ordered, int(max_outstanding), return_exceptions)

    def _map_partitions(
        self,
        f: Any,
        sequences: tuple,
        elementwise: bool = True,
        chunksize: int | None = None,
        ordered: bool = True,
        return_exceptions: bool = False,
        track: bool | None = None,
    ) -> Any:
        raise NotImplementedError

    # -- decorators ----------------------------------------------------------------------------------

    def remote(
        self, block: bool | None = None, **flags: Any
    ) -> Callable[[Callable[..., Any]], RemoteFunction]:
        """Decorator: calling the function runs it remotely through this view."""

        def decorator(f: Callable[..., Any]) -> RemoteFunction:
            return RemoteFunction(self, f, block=block, **flags)

        return decorator

    def parallel(
        self, dist: str = "b", block: bool | None = None, **flags: Any
    ) -> Callable[[Callable[..., Any]], ParallelFunction]:
        """Decorator: the function is called on partitions of its arguments; ``.map`` maps it elementwise."""

        def decorator(f: Callable[..., Any]) -> ParallelFunction:
            return ParallelFunction(self, f, dist=dist, block=block, **flags)

        return decorator

    # -- delegated to the client ---------------------------------------------------------------------

    def wait(self, jobs: Any = None, timeout: float = -1) -> bool:
        """Wait for this view's tasks (or ``jobs``); True when all are done."""
        return self.client.wait(self.history if jobs is None else jobs, timeout)

    @property
    def outstanding(self) -> set[str]:
        return set(self.history) & self.client.outstanding

    @property
    def results(self) -> Any:
        return self.client.results

    def get_result(self, indices_or_msg_ids: Any = None, block: bool | None = None) -> AsyncResult:
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        if isinstance(indices_or_msg_ids, int):
            indices_or_msg_ids = self.history[indices_or_msg_ids]
        return self.client.get_result(indices_or_msg_ids, block=self.block if block is None else block)

    def abort(self, jobs: Any = None, targets: Any = None, block: bool | None = None) -> Any:
        return self.client.abort(
            jobs, targets=self._control_targets(targets), block=self.block if block is None else block
        )

    def queue_status(self, targets: Any = None, verbose: bool = False) -> dict[Any, Any]:
        return self.client.queue_status(self._control_targets(targets), verbose=verbose)

    def purge_results(self, jobs: Any = (), targets: Any = ()) -> None:
        self.client.purge_results(jobs, targets)

    def shutdown(
        self, targets: Any = None, restart: bool = False, hub: bool = False, block: bool | None = None
    ) -> None:
        self.client.shutdown(self._control_targets(targets), restart=restart, hub=hub, block=block)

    def spin(self) -> None:
        self.client.spin()

    def _control_targets(self, targets: Any) -> Any:
        return self._targets if targets is None else targets

    def use_cloudpickle(self) -> None:
        """Kept for compatibility: ipcluster always pickles with cloudpickle."""

    def activate(self, suffix: str = "") -> None:
        """ipyparallel registers the %px magics here; ipcluster has none (NotImplementedError says what
        to use instead)."""
        from .compat import MAGICS_UNSUPPORTED

        raise NotImplementedError(MAGICS_UNSUPPORTED)

    use_dill = use_cloudpickle
    use_pickle = use_cloudpickle

    @property
    def executor(self) -> ViewExecutor:
        """A concurrent.futures.Executor running tasks through this view."""
        return ViewExecutor(self)

    def __len__(self) -> int:
        targets = self._targets
        if isinstance(targets, int):
            return 1
        if targets is None or targets == "all":
            return len(self.client)
        return len(targets)

    def __repr__(self) -> str:
        targets = self._targets
        shown = "all" if targets is None or targets == "all" else targets
        return f"<{type(self).__name__} {shown}>"


def _imap(
    view: View,
    mapper: Any,
    iterators: list[Iterator[Any]],
    ordered: bool,
    max_outstanding: int,
    return_exceptions: bool,
) -> Iterator[Any]:
    f_frame = wire.serialize_function(mapper)
    in_flight: deque[AsyncResult] = deque()
    exhausted = False

    def submit_one() -> bool:
        try:
            items = [next(it) for it in iterators]
        except StopIteration:
            return False
        buffers = wire.pack_apply_message(None, [[x] for x in items], {}, f_frame=f_frame)
        if view._load_balanced:
            ar = view.client._submit(
                clientio.TASK,
                "apply_request",
                [(None, None)],
                buffers=buffers,
                metadata=view._task_metadata(),
                fname="imap",
                single=True,
                return_exceptions=return_exceptions,
            )
        else:
            idents, ids = view.client._build_targets(view.targets)
            k = len(view.history) % len(ids)
            ar = view.client._submit(
                clientio.MUX,
                "apply_request",
                [(idents[k], ids[k])],
                buffers=buffers,
                fname="imap",
                single=True,
                return_exceptions=return_exceptions,
            )
        view.history.extend(ar.msg_ids)
        in_flight.append(ar)
        return True

    while True:
        while not exhausted and len(in_flight) < max_outstanding:
            exhausted = not submit_one()
        if not in_flight:
            return
        if ordered:
            ar = in_flight.popleft()
        else:
            done, _ = concurrent.futures.wait(list(in_flight), return_when=concurrent.futures.FIRST_COMPLETED)
            ar = next(a for a in in_flight if a in done)
            in_flight.remove(ar)
        value = ar.get()
        yield value[0] if isinstance(value, list) else value


class ViewExecutor(concurrent.futures.Executor):
    """``view.executor``: submit/map in the concurrent.futures style; the futures are AsyncResults."""

    def __init__(self, view: View) -> None:
        self.view = view

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncResult:  # type: ignore[override]
        return self.view.apply_async(fn, *args, **kwargs)

    def map(
        self, fn: Callable[..., Any], *iterables: Any, timeout: float | None = None, chunksize: int = 1
    ) -> Iterator[Any]:  # type: ignore[override]
        kwargs: dict[str, Any] = {}
        if self.view._load_balanced:
            kwargs["chunksize"] = chunksize
        ar = self.view.map_async(fn, *iterables, **kwargs)
        if timeout is not None:
            ar.get(timeout)
        return iter(ar)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if wait:
            self.view.wait()
