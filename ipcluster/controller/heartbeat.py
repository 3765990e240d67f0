"""HeartMonitor: decides which engines are alive (docs/protocol.md §4).

Every ``period`` ms it publishes ``[b"ping", nonce]`` (16 fresh random bytes). An engine's heart answers
``[nonce, mac]`` on its DEALER, ``mac = session.signer.sign([nonce + engine_uuid_ascii])`` (the hex
digest the message signer gives for that one frame), so only a key holder can keep an engine alive. A pong
for the current or the previous nonce counts. ``misses`` consecutive beats without a pong fail the engine.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from collections.abc import Callable
from typing import Any

import zmq

from ipcluster.wire import RateLimitedLog, Session, SocketReader

log = logging.getLogger("ipcluster.controller")


def pong_mac(session: Session, nonce: bytes, ident: bytes) -> bytes:
    """The mac an engine's heart must send with ``nonce`` (empty when the cluster is unsigned)."""
    return session.signer.sign([nonce + ident])


class HeartMonitor:
    """Tracks hearts by engine identity; calls ``on_new_heart`` / ``on_heart_failure`` with that identity.

    Only identities announced with ``expect()`` (a pending registration) become hearts, so stray pongs
    cannot register anything.
    """

    def __init__(
        self,
        session: Session,
        ping: zmq.Socket,
        pong: zmq.Socket,
        period_ms: int,
        misses: int,
        on_new_heart: Callable[[bytes], None],
        on_heart_failure: Callable[[bytes], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.session = session
        self.ping = ping
        self.pong = pong
        self.period = period_ms / 1000
        self.misses = misses
        self.on_new_heart = on_new_heart
        self.on_heart_failure = on_heart_failure
        self.loop = loop
        self.reader = SocketReader(pong, self.on_pong, loop=loop, copy=True)
        self.badlog = RateLimitedLog(log)
        self.hearts: dict[bytes, int] = {}  # ident → consecutive missed beats
        self.expected: set[bytes] = set()
        self.responses: set[bytes] = set()
        self.nonce = os.urandom(16)
        self.previous = self.nonce
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0

    def start(self) -> None:
        self.reader.start()
        self._next = self.loop.time()
        self._beat()

    def stop(self) -> None:
        self.reader.stop()
        if self._handle is not None:
            self._handle.cancel()

    def expect(self, ident: bytes) -> None:
        self.expected.add(ident)

    def forget(self, ident: bytes) -> None:
        self.expected.discard(ident)
        self.hearts.pop(ident, None)
        self.responses.discard(ident)

    def _beat(self) -> None:
        failed = []
        for ident in self.hearts:
            if ident in self.responses:
                self.hearts[ident] = 0
            else:
                self.hearts[ident] += 1
                if self.hearts[ident] >= self.misses:
                    failed.append(ident)
        self.responses.clear()
        for ident in failed:
            del self.hearts[ident]
            log.warning(
                "heart %s missed %d beats: engine failed", ident.decode("ascii", "replace"), self.misses
            )
            self.on_heart_failure(ident)
        self.previous, self.nonce = self.nonce, os.urandom(16)
        self.ping.send_multipart([b"ping", self.nonce])
        # fixed cadence: a slow beat does not push every later one back
        now = self.loop.time()
        self._next = max(self._next + self.period, now + self.period / 10)
        self._handle = self.loop.call_at(self._next, self._beat)

    def on_pong(self, frames: list[Any]) -> None:
        if len(frames) != 3:
            peer = frames[0] if frames else b"?"
            self.badlog.warning(peer, "dropped a malformed pong from %r (%d frames)", peer, len(frames))
            return
        ident, nonce, mac = frames
        if nonce != self.nonce and nonce != self.previous:
            log.debug("stale pong from %r", ident)
            return
        if self.session.secure and not hmac.compare_digest(mac, pong_mac(self.session, nonce, ident)):
            self.badlog.warning(ident, "dropped a pong with a bad mac from %r (wrong key?)", ident)
            return
        if ident in self.hearts:
            self.responses.add(ident)
        elif ident in self.expected:
            self.expected.discard(ident)
            self.hearts[ident] = 0
            self.responses.add(ident)
            self.on_new_heart(ident)
