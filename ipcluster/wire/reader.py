"""Drive plain zmq sockets from an asyncio loop with little overhead per message.

A zmq socket's file descriptor is edge-triggered: it signals "something changed", and any operation on the
socket (a send included) can consume that signal. So the reader drains every waiting message whenever the
descriptor fires, and owners call ``poke()`` after sending on the socket so a message that arrived during
the send is not left waiting for the next edge. Draining in batches keeps one busy socket from starving the
others on the loop. This is the fast path the controller and engines use instead of a future per recv.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

import zmq

log = logging.getLogger("ipcluster.wire")

# The backend's recv/send skip the sugar layer (per-frame RCVMORE getsockopt, flag enums): a multipart
# receive costs ~4 us instead of ~15 us, which matters at tens of thousands of messages per second.
_recv = zmq.backend.Socket.recv
_send = zmq.backend.Socket.send
# Whether a message waits: a zero-timeout zmq_poll reads the socket's EVENTS in C (and so re-arms its
# descriptor, like getsockopt); the backend getsockopt goes through Python-level option enums each time.
_poll = zmq.backend.zmq_poll
_NOBLOCK = int(zmq.NOBLOCK)
_POLLIN = int(zmq.POLLIN)
_SNDMORE = int(zmq.SNDMORE)


def recv_frames(sock: zmq.Socket, flags: int = _NOBLOCK) -> list[Any]:
    """One multipart message as zmq.Frames (no copies); raises zmq.Again when none is waiting (NOBLOCK)."""
    frame = _recv(sock, flags, False)
    frames = [frame]
    while frame.more:  # the rest of a multipart message is already here
        frame = _recv(sock, 0, False)
        frames.append(frame)
    return frames


def send_frames(sock: zmq.Socket, frames: list[Any], copy: bool = True) -> None:
    """Send a multipart message; with ``copy=False`` frames above zmq.COPY_THRESHOLD go out zero-copy."""
    last = len(frames) - 1
    for i in range(last):
        _send(sock, frames[i], _SNDMORE, copy)
    _send(sock, frames[last], 0, copy)


# loop -> the readers poked while one of its readers drains (checked when the drain's batch ends)
_in_drain: dict[Any, list[SocketReader]] = {}  # per event loop


class SocketReader:
    """Calls ``on_message(frames)`` for every multipart message arriving on ``socket``.

    ``batch`` bounds how many messages are handled before yielding to the loop. Exceptions raised by the
    callback are logged and do not stop the reader: one bad message must not take a process down.
    """

    def __init__(
        self,
        socket: zmq.Socket,
        on_message: Callable[[list[Any]], None],
        loop: asyncio.AbstractEventLoop | None = None,
        copy: bool = False,
        batch: int = 512,
    ) -> None:
        self.socket = socket
        self._items = [(socket, _POLLIN)]  # for _poll: is a message waiting?
        self.on_message = on_message
        if loop is None:
            import asyncio  # here, not at the top: engines use this module without asyncio

            loop = asyncio.get_event_loop()
        self.loop = loop
        self.copy = copy
        self.batch = batch
        self._scheduled = False
        self._started = False
        self._deferred = False

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.loop.add_reader(self.socket.getsockopt(zmq.FD), self._on_fd)
        self.poke()

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            self.loop.remove_reader(self.socket.getsockopt(zmq.FD))
        except (zmq.ZMQError, ValueError, OSError):
            pass

    def poke(self) -> None:
        """Drain soon if messages are waiting; call after sending on this socket (see module docstring).

        Reading EVENTS re-arms the descriptor, so when nothing is waiting no loop turn is spent: a message
        arriving later fires the descriptor again. Pokes made while a reader of the same loop drains (a
        relay forwarding what it receives) are checked once, when that batch ends.
        """
        if not self._started or self._scheduled:
            return
        batch = _in_drain.get(self.loop)
        if batch is not None:
            if not self._deferred:
                self._deferred = True
                batch.append(self)
            return
        self._check()

    def _check(self) -> None:
        try:
            if not _poll(self._items, 0):
                return
        except zmq.ZMQError:
            pass  # closed or terminating: let the drain see it
        self._scheduled = True
        self.loop.call_soon(self._drain)

    def _on_fd(self) -> None:
        self._drain()

    def _drain(self) -> None:
        self._scheduled = False
        if not self._started:
            return
        loop = self.loop
        if loop in _in_drain:  # not expected (drains run from the loop), but never lose a poke
            self._drain_batch()
            return
        _in_drain[loop] = batch = []
        try:
            self._drain_batch()
        finally:
            del _in_drain[loop]
            for reader in batch:
                reader._deferred = False
                if reader._started and not reader._scheduled:
                    reader._check()

    def _drain_batch(self) -> None:
        sock = self.socket
        items = self._items
        on_message = self.on_message
        copy = self.copy
        for _ in range(self.batch):
            try:
                if not _poll(items, 0):  # cheaper than the zmq.Again raised by an empty recv
                    return
                frames = recv_frames(sock)
                if copy:
                    frames = [f.bytes for f in frames]
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                if exc.errno in (zmq.ENOTSOCK, zmq.ETERM):
                    self.stop()
                    return
                raise
            try:
                on_message(frames)
            except Exception:
                log.exception("error while handling a message on %s", _socket_name(sock))
        self.poke()  # more may be waiting: continue after other callbacks had a turn


def _socket_name(sock: zmq.Socket) -> str:
    try:
        return sock.getsockopt_string(zmq.LAST_ENDPOINT) or repr(sock)
    except zmq.ZMQError:
        return repr(sock)
