"""The engine's heart: answers the controller's pings from its own thread (docs/protocol.md §4).

It runs beside user code, so a long computation does not make the engine look dead; it owns its two
sockets (zmq sockets are not shared across threads). It also watches the controller: when no ping has
arrived for ``hb_misses * hb_period + grace`` ms the controller is gone and ``on_controller_gone`` runs.

The controller fails an engine as soon as its heart's connection closes (ROUTER_NOTIFY), which may be a
tunnel blip shorter than the ping gap that calls ``on_gap``; so the heart watches its own DEALER too, and
the first ping after a disconnect of it also calls ``on_gap`` (the engine checks it is still registered).
Polls are blocking zmq polls, which release the GIL, so a tight loop in the main thread cannot starve them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import zmq

from ipcluster.wire.signing import Signer

# How often the heart wakes to notice a stop request even when no ping comes (seconds).
_STOP_CHECK = 0.25


def pong_mac(signer: Signer, nonce: bytes, engine_uuid: bytes) -> bytes:
    """The mac of a pong: the keyed hash of nonce + engine uuid, hex (so only a key holder keeps us alive)."""
    return signer.sign([nonce + engine_uuid])


class Heart(threading.Thread):
    """SUB on ``ping_url`` and DEALER (IDENTITY = engine uuid) on ``pong_url``; both connect."""

    def __init__(
        self,
        context: zmq.Context,
        ping_url: str,
        pong_url: str,
        engine_uuid: bytes,
        signer: Signer,
        timeout_ms: float,
        on_controller_gone: Callable[[], None],
        gap_ms: float = 0.0,
        on_gap: Callable[[], None] | None = None,
        first_nonce: bytes | None = None,
    ) -> None:
        super().__init__(name="ipengine-heart", daemon=True)
        self.context = context
        self.ping_url = ping_url
        self.pong_url = pong_url
        self.engine_uuid = engine_uuid
        self.signer = signer
        self.timeout = timeout_ms / 1000.0
        self.on_controller_gone = on_controller_gone
        self.beats = 0
        # pings resuming after more than gap_ms of silence call on_gap (rejoin.py: re-register if lapsed)
        self.gap = gap_ms / 1000.0
        self.on_gap = on_gap
        # the nonce of the registration reply: ponged as soon as we connect, so registration completes at
        # once rather than at the next ping (up to a period later)
        self.first_nonce = first_nonce
        self._stopped = threading.Event()
        self.disconnects = 0

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        sub = self.context.socket(zmq.SUB)
        pong = self.context.socket(zmq.DEALER)
        try:
            sub.setsockopt(zmq.LINGER, 0)
            sub.setsockopt(zmq.SUBSCRIBE, b"ping")
            pong.setsockopt(zmq.LINGER, 0)
            pong.setsockopt(zmq.IDENTITY, self.engine_uuid)
            monitor = pong.get_monitor_socket(zmq.EVENT_DISCONNECTED) if self.on_gap is not None else None
            sub.connect(self.ping_url)
            pong.connect(self.pong_url)
            if self.first_nonce:
                pong.send_multipart(
                    [self.first_nonce, pong_mac(self.signer, self.first_nonce, self.engine_uuid)]
                )
            try:
                self._beat(sub, pong, monitor)
            finally:
                if monitor is not None:
                    pong.disable_monitor()
                    monitor.close(0)
        finally:
            sub.close(0)
            pong.close(0)

    def _disconnected(self, monitor: zmq.Socket) -> bool:
        """True if the monitor reported that the pong connection closed (read every queued event)."""
        seen = False
        while True:
            try:
                monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return seen
            seen = True

    def _beat(self, sub: zmq.Socket, pong: zmq.Socket, monitor: zmq.Socket | None = None) -> None:
        deadline = time.monotonic() + self.timeout
        last_ping = time.monotonic()
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        if monitor is not None:
            poller.register(monitor, zmq.POLLIN)
        lapsed = False  # the pong connection closed since the last ping: the controller may have failed us
        while not self._stopped.is_set():
            remaining = deadline - time.monotonic()
            # Past the deadline, pings that queued while this thread was starved of the GIL (user code in a
            # long C call) still count: only an empty socket means the controller is gone.
            ready = dict(poller.poll(max(0.0, min(remaining, _STOP_CHECK)) * 1000))
            if monitor is not None and monitor in ready and self._disconnected(monitor):
                self.disconnects += 1
                lapsed = True
            if sub not in ready:
                if remaining <= 0:
                    self.on_controller_gone()
                    return
                continue
            while True:
                try:
                    frames = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(frames) != 2:
                    continue
                nonce = frames[1]
                pong.send_multipart([nonce, pong_mac(self.signer, nonce, self.engine_uuid)])
                self.beats += 1
                now = time.monotonic()
                if self.on_gap is not None and (lapsed or (self.gap and now - last_ping > self.gap)):
                    lapsed = False
                    self.on_gap()
                last_ping = now
                deadline = now + self.timeout
