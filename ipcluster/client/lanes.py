"""Sync lanes: a blocking call sends its requests and receives their replies in the calling thread.

Through the IO thread a blocking ``apply_sync`` costs four thread wake-ups in this process: the caller hands
the frames over, the IO thread sends; the IO thread receives the reply and wakes the caller. A lane is a
DEALER of its own on the mux or task channel, with the identity ``<session id>.<n>`` (docs/protocol.md §2),
that one thread at a time borrows: it sends on it and waits on it itself, so the controller routes the
reply straight back to the waiting caller. Replies are dispatched through the Client's normal reply
handler, under the IO thread's dispatch lock, so metadata, outputs and replies held for their output
behave exactly as when the IO thread receives them.

A lane goes back to the pool only once every request sent on it has been answered. A lane whose caller
stopped waiting early (Ctrl-C, an exception) is handed over to the IO thread, which receives the late
replies on it and dispatches them as usual, then gives the lane back.

While replies come back quickly, the caller polls for its reply a short while (``SPIN_S``, yielding the
CPU between polls) before it sleeps: waking a sleeping thread is the costliest step of a round trip,
above all on a virtual machine whose idle CPUs the host deschedules.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from ipcluster.wire import recv_frames, send_frames

WAIT_SLICE_MS = 100  # a waiting caller checks this often whether its result was settled another way
SPIN_S = 0.002  # a caller polls up to this long for its replies before it sleeps; 0: never (Lanes._collect)
MAX_LANES = 16  # per channel; a thread finding none free goes through the IO thread
_POLLIN = int(zmq.POLLIN)
_zmq_poll = zmq.backend.zmq_poll  # [(socket, events)], timeout 0: is a reply waiting? (C only, no enums)
_yield = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))


class SyncLane:
    """One DEALER on one channel, used by one thread at a time; ``inflight`` counts unanswered requests."""

    __slots__ = ("channel", "sock", "inflight")

    def __init__(self, context: zmq.Context, url: str, ident: bytes, channel: bytes) -> None:
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, ident)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, WAIT_SLICE_MS)
        sock.connect(url)
        self.channel = channel
        self.sock = sock
        self.inflight = 0

    def send(self, frames: list[Any], copy: bool) -> None:
        send_frames(self.sock, frames, copy)
        self.inflight += 1

    def close(self) -> None:
        self.sock.close(0)


class Lanes:
    """The pool of lanes of one Client, and the blocking call made on one.

    ``urls`` maps a channel tag to its url (the same, possibly tunnelled, urls the IO thread uses).
    ``dispatch(frames)`` verifies one reply and hands it to the Client (True if it was a valid reply);
    ``adopt(lane)`` gives a lane with unanswered requests to the IO thread (False once it is stopping);
    ``settle()`` asks the IO thread to look at replies held for their output.
    """

    def __init__(
        self,
        context: zmq.Context,
        urls: dict[bytes, str],
        ident_prefix: bytes,
        dispatch: Callable[[list[Any]], bool],
        adopt: Callable[[SyncLane], bool],
        settle: Callable[[], None],
    ) -> None:
        self.context = context
        self.urls = urls
        self.ident_prefix = ident_prefix
        self.dispatch = dispatch
        self.adopt = adopt
        self.settle = settle
        self._lock = threading.Lock()
        self._free: dict[bytes, list[SyncLane]] = {channel: [] for channel in urls}
        self._count = dict.fromkeys(urls, 0)
        self._made = 0
        self._local = threading.local()
        self._closed = False
        self._spinning = False  # a caller is polling for its replies (only one at a time)
        self._typical_wait = 0.0  # seconds from sending to the first reply, recently (see _note_wait)

    def current(self, channel: bytes) -> SyncLane | None:
        """The lane this thread is sending on for ``channel`` (inside ``call``), else None."""
        lane = getattr(self._local, "lane", None)
        return lane if lane is not None and lane.channel == channel else None

    def call(self, channel: bytes, submit: Callable[[], Any]) -> Any:
        """``submit()`` (which sends its requests on ``channel`` and returns their AsyncResult) on a lane,
        then receive the replies here; the AsyncResult is returned settled, or held for its output (the IO
        thread settles it when the output arrives). Without a free lane, ``submit()`` goes as usual."""
        lane = self._take(channel)
        if lane is None:
            return submit()
        self._local.lane = lane
        try:
            ar = submit()
        except BaseException:
            self._local.lane = None
            self.give_back(lane)
            raise
        self._local.lane = None
        try:
            self._collect(lane, ar)
        finally:
            self.give_back(lane)
        if not ar.done():
            self.settle()
        return ar

    def _collect(self, lane: SyncLane, ar: Any) -> None:
        """Receive and dispatch the lane's replies.

        While replies typically come back within ``SPIN_S``, the caller first polls for them for up to
        ``SPIN_S`` (see the module docstring); one thread per client polls at a time, the others, and any
        wait past ``SPIN_S``, sleep in the socket. A reply that takes longer makes the next calls sleep at
        once, until replies come back quickly again, so long tasks cost no polling.
        """
        sock, dispatch = lane.sock, self.dispatch
        start = time.perf_counter()
        spin_until = 0.0
        if SPIN_S > 0 and self._typical_wait < SPIN_S and not self._spinning:
            self._spinning = True
            spin_until = start + SPIN_S
        items = [(sock, _POLLIN)]
        first = True
        try:
            while lane.inflight and not ar.done():
                if spin_until and not _zmq_poll(items, 0):
                    if time.perf_counter() < spin_until:
                        _yield()
                    else:
                        spin_until = 0.0
                        self._spinning = False
                    continue
                try:
                    frames = recv_frames(sock, 0)
                except zmq.Again:
                    continue  # a slice passed: look whether the result was settled another way
                if dispatch(frames):
                    lane.inflight -= 1
                    if first:
                        first = False
                        self._note_wait(time.perf_counter() - start)
        except zmq.ZMQError:
            return  # the context is being terminated (the Client is closing)
        finally:
            if spin_until:
                self._spinning = False

    def _note_wait(self, wait: float) -> None:
        """How long replies take: a shorter wait counts at once, a longer one by halves."""
        typical = self._typical_wait
        self._typical_wait = wait if wait < typical else (typical + wait) / 2

    def _take(self, channel: bytes) -> SyncLane | None:
        with self._lock:
            if self._closed:
                return None
            free = self._free.get(channel)
            if free is None:
                return None
            if free:
                return free.pop()
            if self._count[channel] >= MAX_LANES:
                return None
            self._count[channel] += 1
            self._made += 1
            ident = self.ident_prefix + b".%d" % self._made
        try:
            return SyncLane(self.context, self.urls[channel], ident, channel)
        except zmq.ZMQError:
            with self._lock:
                self._count[channel] -= 1
            return None

    def give_back(self, lane: SyncLane) -> None:
        """Return a lane to the pool once it owes nothing, otherwise hand it to the IO thread (any thread)."""
        if lane.inflight and self.adopt(lane):
            return
        with self._lock:
            if not self._closed and not lane.inflight:
                self._free[lane.channel].append(lane)
                return
            self._count[lane.channel] -= 1
        lane.close()

    def lanes_made(self) -> int:
        """How many lanes this client opened so far (for tests and diagnostics)."""
        return self._made

    def close(self) -> None:
        """Close the free lanes; a lane still in use is closed when its caller gives it back."""
        with self._lock:
            self._closed = True
            free = [lane for lanes in self._free.values() for lane in lanes]
            for lanes in self._free.values():
                lanes.clear()
        for lane in free:
            lane.close()
