"""Client methods kept for code written against the seed and ipyparallel.

``send_apply_message`` / ``send_apply_request`` / ``send_execute_request`` are the low-level sends the views
are built on there; here they are thin wrappers over the same path the views use. ``become_dask`` and
``activate`` belong to integrations ipcluster does not ship (dask, IPython magics): they raise an error that
says what to use instead.
"""

from __future__ import annotations

import pprint
import sys
from collections.abc import Callable
from typing import Any

from ipcluster import wire

from . import io as clientio
from .asyncresult import AsyncResult
from .fcache import function_pickle
from .remotefunction import func_name, prepare_callable

_CHANNELS = {
    "mux": clientio.MUX,
    "task": clientio.TASK,
    clientio.MUX: clientio.MUX,
    clientio.TASK: clientio.TASK,
}

MAGICS_UNSUPPORTED = (
    "the %px / %%px IPython magics are not part of ipcluster: run code on the engines with "
    "view.execute(code, block=True), then ar.display_outputs() to print its output and result"
)
DASK_UNSUPPORTED = (
    "ipcluster does not turn its engines into dask workers: use rc.executor() or view.executor, "
    "a concurrent.futures.Executor, to submit work to the engines"
)


_RECEIVERS = ("on_reply", "on_query_reply", "on_iopub", "on_notification")


def _printing(handler: Callable[..., None]) -> Callable[..., None]:
    def print_then_handle(msg: Any, *rest: Any) -> None:
        if msg is not None:
            shown = {k: msg.get(k) for k in ("msg_type", "header", "parent_header", "metadata", "content")}
            shown["buffers"] = f"<{len(msg.get('buffers') or ())} buffers>"
            pprint.pprint(shown, stream=sys.stdout)
        handler(msg, *rest)

    return print_then_handle


class CompatMixin:
    """The seed's and ipyparallel's low-level Client calls (a mixin: the state lives on the Client)."""

    _debug = False

    @property
    def debug(self) -> bool:
        """When True, every message the client receives is printed (as in the seed and ipyparallel)."""
        return self._debug

    @debug.setter
    def debug(self, value: bool) -> None:
        self._debug = bool(value)
        self._apply_debug()

    def _apply_debug(self) -> None:
        io = getattr(self, "_io", None)
        if io is None:
            return
        for name in _RECEIVERS:  # the IO thread looks its handlers up on each message
            handler = getattr(self, "_" + name)
            setattr(io, name, _printing(handler) if self._debug else handler)

    def _route(self, socket: Any, ident: Any) -> tuple[bytes, list[tuple[bytes | None, int | None]]]:
        """(channel, [(engine ident, engine id)]) for ``socket`` ("mux", "task" or a view) and ``ident``."""
        view_channel = getattr(socket, "_socket", None)
        if view_channel is not None:  # a view: its channel, and for a DirectView its (single) target
            if ident is None and view_channel == "mux":
                ident = socket.targets
            socket = view_channel
        channel = _CHANNELS.get(socket)
        if channel is None:
            raise TypeError(f"socket must be 'mux', 'task' or a view, not {socket!r}")
        if channel == clientio.TASK:
            return channel, [(None, None)]
        if ident is None:
            raise ValueError("a request on 'mux' needs ident: the engine id (or uuid) to run on")
        if isinstance(ident, bytes):
            ident = ident.decode("ascii")
        if isinstance(ident, str):
            engines = {uuid: eid for eid, uuid in self._engines.items()}  # type: ignore[attr-defined]
            if ident not in engines:
                raise IndexError(f"No such engine: {ident!r}")
            ident = engines[ident]
        if not isinstance(ident, int):
            raise TypeError(f"ident must be one engine id or uuid, not {ident!r}")
        idents, ids = self._build_targets(ident)  # type: ignore[attr-defined]
        return channel, [(idents[0], ids[0])]

    def _flags(self, channel: bytes, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        if not metadata:
            return None
        if channel != clientio.TASK:
            raise ValueError(
                "metadata (after, follow, retries, timeout, targets) applies to 'task' requests only"
            )
        from .control import _resubmit_flags

        return _resubmit_flags(self, dict(metadata)) or None

    def send_apply_message(
        self,
        socket: Any,
        f: Any,
        args: Any = None,
        kwargs: Any = None,
        subheader: dict[str, Any] | None = None,
        track: bool = False,
        ident: Any = None,
        metadata: dict[str, Any] | None = None,
    ) -> AsyncResult:
        """Send one ``f(*args, **kwargs)`` request: on ``'mux'`` to engine ``ident``, or on ``'task'``
        load-balanced (``subheader`` / ``metadata``: after, follow, retries, timeout, targets).

        Returns the AsyncResult tracking it (the seed returned the message; ``ar.msg_id`` is its id).
        """
        args = tuple(args or ())
        kwargs = dict(kwargs or {})
        if not callable(f):
            raise TypeError(f"f must be callable, not {type(f).__name__}")
        channel, requests = self._route(socket, ident)
        flags = self._flags(channel, {**(subheader or {}), **(metadata or {})})
        buffers = wire.pack_apply_message(None, args, kwargs, f_frame=function_pickle(prepare_callable(f)))
        return self._submit(  # type: ignore[attr-defined,no-any-return]
            channel,
            "apply_request",
            requests,
            buffers=buffers,
            metadata=flags,
            fname=func_name(f),
            single=True,
            track=track,
        )

    def send_apply_request(
        self,
        socket: Any,
        f: Any,
        args: Any = None,
        kwargs: Any = None,
        metadata: dict[str, Any] | None = None,
        track: bool = False,
        ident: Any = None,
    ) -> AsyncResult:
        """ipyparallel's name for ``send_apply_message``."""
        return self.send_apply_message(socket, f, args, kwargs, track=track, ident=ident, metadata=metadata)

    def send_execute_request(
        self,
        socket: Any,
        code: str,
        silent: bool = True,
        metadata: dict[str, Any] | None = None,
        ident: Any = None,
    ) -> AsyncResult:
        """Send one ``execute_request`` (``code`` run in the engine's namespace); see send_apply_message."""
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        channel, requests = self._route(socket, ident)
        ar = self._submit(  # type: ignore[attr-defined]
            channel,
            "execute_request",
            requests,
            content={"code": code, "silent": silent},
            metadata=self._flags(channel, metadata),
            fname="execute",
            single=True,
        )
        self.metadata[ar.msg_id]["execute_input"] = code  # type: ignore[attr-defined]
        return ar  # type: ignore[no-any-return]

    def activate(self, targets: Any = "all", suffix: str = "") -> None:
        """ipyparallel registers the %px magics here; ipcluster has none (NotImplementedError says what
        to use instead)."""
        raise NotImplementedError(MAGICS_UNSUPPORTED)

    def become_dask(self, *args: Any, **kwargs: Any) -> None:
        """ipyparallel starts dask workers on the engines here; ipcluster does not (NotImplementedError
        says what to use instead)."""
        raise NotImplementedError(DASK_UNSUPPORTED)

    become_distributed = become_dask

    def stop_dask(self, *args: Any, **kwargs: Any) -> None:
        """See become_dask."""
        raise NotImplementedError(DASK_UNSUPPORTED)

    stop_distributed = stop_dask
