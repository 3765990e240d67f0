"""HeartMonitor: decides which engines are alive (docs/protocol.md §4).

Every ``period`` ms it publishes ``[b"ping", nonce]`` (16 fresh random bytes). An engine's heart answers
``[nonce, mac]`` on its DEALER, ``mac = session.signer.sign([nonce + engine_uuid_ascii])`` (the hex
digest the message signer gives for that one frame), so only a key holder can keep an engine alive. A pong
for one of the last ``max(2, misses)`` nonces counts. ``misses`` consecutive beats without a pong fail the
engine. Pings go out from a small thread of their own, so a controller loop busy relaying a burst of tasks
cannot starve the engines of pings (which would make them think the controller is gone).

A socket monitor on the pong ROUTER reports each closed connection by file descriptor, and every pong
tells which descriptor it came on (``SRCFD``), so a killed engine fails at once instead of after ``misses``
periods; a pong within ``disconnect_grace`` of the disconnect (a heart that reconnected) cancels that.
(libzmq's ``ROUTER_NOTIFY`` would say the same more simply, but it is a draft option that the libzmq
bundled with pyzmq does not build.) Misses are counted only after draining the pongs
already queued, and a beat whose timer fired more than a period late (the loop was busy) counts no misses.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

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
        on_heart_failure: Callable[..., None],
        loop: asyncio.AbstractEventLoop,
        disconnect_grace_ms: int = 0,
    ) -> None:
        self.session = session
        self.ping = ping
        self.pong = pong
        self.period = period_ms / 1000
        self.misses = misses
        self.on_new_heart = on_new_heart
        self.on_heart_failure = on_heart_failure
        self.loop = loop
        self.reader = SocketReader(pong, self.on_pong, loop=loop, copy=False)
        self.badlog = RateLimitedLog(log)
        self.hearts: dict[bytes, int] = {}  # ident → consecutive missed beats
        self.expected: set[bytes] = set()
        self.responses: set[bytes] = set()
        self.nonces: tuple[bytes, ...] = (os.urandom(16),)  # newest first; replaced whole (thread-safe)
        self._keep = max(2, misses)
        self._halt = threading.Event()
        self._pinger: threading.Thread | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._next = 0.0
        self.grace = disconnect_grace_ms / 1000
        self.disconnected: dict[bytes, asyncio.TimerHandle] = {}  # ident → pending disconnect failure
        self.late_beats = 0
        self._late_logged = -1e9
        self.disconnect_failures = 0
        self.track_fds = True  # disconnect detection: needs the SRCFD message property
        self.fd_ident: dict[int, bytes] = {}  # connection fd → the heart that last ponged on it
        self.ident_fd: dict[bytes, int] = {}
        self.monitor = pong.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.monitor_reader = SocketReader(self.monitor, self._on_monitor, loop=loop, copy=True)

    def start(self) -> None:
        self.reader.start()
        self.monitor_reader.start()
        self._pinger = threading.Thread(target=self._ping_loop, name="ipcontroller-ping", daemon=True)
        self._halt.clear()
        self._pinger.start()
        self._next = self.loop.time()
        self._beat()

    def stop(self) -> None:
        self._halt.set()
        if self._pinger is not None:
            self._pinger.join(5)
        self.reader.stop()
        self.monitor_reader.stop()
        try:
            self.pong.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(0)
        if self._handle is not None:
            self._handle.cancel()
        for handle in self.disconnected.values():
            handle.cancel()
        self.disconnected.clear()

    def expect(self, ident: bytes) -> None:
        self.expected.add(ident)

    def forget(self, ident: bytes) -> None:
        self.expected.discard(ident)
        self.hearts.pop(ident, None)
        self.responses.discard(ident)
        handle = self.disconnected.pop(ident, None)
        if handle is not None:
            handle.cancel()
        fd = self.ident_fd.pop(ident, None)
        if fd is not None and self.fd_ident.get(fd) == ident:
            del self.fd_ident[fd]

    def _drain(self) -> None:
        """Read every pong already queued, so a busy loop does not count them as misses."""
        recv = self.pong.recv_multipart
        for _ in range(100_000):
            try:
                frames = recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.on_pong(frames)

    def _beat(self) -> None:
        lag = self.loop.time() - self._next
        self._drain()
        failed = []
        if lag > self.period:
            # the timer fired a period late: the loop (or this host) stalled, not the engines
            self.late_beats += 1
            now = self.loop.time()
            if now - self._late_logged > 10:  # a chronically busy controller: one line per 10 s
                self._late_logged = now
                log.warning(
                    "heartbeat ran %.0f ms late (the controller is overloaded): no misses counted "
                    "(%d late beats so far)",
                    lag * 1000,
                    self.late_beats,
                )
            for ident in self.responses:
                if ident in self.hearts:
                    self.hearts[ident] = 0
        else:
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
        # fixed cadence: a slow beat does not push every later one back
        now = self.loop.time()
        self._next = max(self._next + self.period, now + self.period / 10)
        self._handle = self.loop.call_at(self._next, self._beat)

    def _ping_loop(self) -> None:
        """The pinger thread: the only user of the ping socket. Waits release the GIL."""
        deadline = time.monotonic()
        while not self._halt.is_set():
            nonce = os.urandom(16)
            self.nonces = (nonce, *self.nonces[: self._keep - 1])
            try:
                self.ping.send_multipart([b"ping", nonce])
            except zmq.ZMQError:  # pragma: no cover - closing
                return
            now = time.monotonic()
            deadline = max(deadline + self.period, now + self.period / 10)
            if self._halt.wait(max(0.0, deadline - time.monotonic())):
                return

    def _on_monitor(self, frames: list[Any]) -> None:
        try:
            event = parse_monitor_message(frames)
        except Exception:  # pragma: no cover - libzmq wrote it
            return
        if event["event"] != zmq.EVENT_DISCONNECTED:
            return
        ident = self.fd_ident.pop(int(event["value"]), None)
        if ident is not None and self.ident_fd.get(ident) == event["value"]:
            del self.ident_fd[ident]
            self._on_disconnect(ident)

    def _drain_monitor(self) -> None:
        while True:
            try:
                frames = self.monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._on_monitor(frames)

    def _track_fd(self, ident: bytes, fd: int) -> None:
        """Remember which connection a heart pongs on. Disconnects already reported apply first, so a
        closed descriptor that the kernel reuses for a new heart is not blamed on it."""
        self._drain_monitor()
        old = self.ident_fd.get(ident)
        if old is not None and self.fd_ident.get(old) == ident:
            del self.fd_ident[old]
        self.ident_fd[ident] = fd
        self.fd_ident[fd] = ident

    def _on_disconnect(self, ident: bytes) -> None:
        if ident not in self.hearts or ident in self.disconnected:
            return  # a pending registration or a stranger: the registration timeout deals with it
        if self.grace <= 0:
            self._fail_disconnected(ident)
        else:
            self.disconnected[ident] = self.loop.call_later(self.grace, self._fail_disconnected, ident)

    def _fail_disconnected(self, ident: bytes) -> None:
        self.disconnected.pop(ident, None)
        if self.hearts.pop(ident, None) is None:
            return
        self.responses.discard(ident)
        self.disconnect_failures += 1
        log.warning("heart %s disconnected: engine failed", ident.decode("ascii", "replace"))
        self.on_heart_failure(ident, "its connection closed")

    def on_pong(self, frames: list[Any]) -> None:
        if len(frames) != 3:
            peer = frames[0].bytes if frames else b"?"
            self.badlog.warning(peer, "dropped a malformed pong from %r (%d frames)", peer, len(frames))
            return
        ident, nonce, mac = frames[0].bytes, frames[1].bytes, frames[2].bytes
        if nonce not in self.nonces:
            log.debug("stale pong from %r", ident)
            return
        if self.session.secure and not hmac.compare_digest(mac, pong_mac(self.session, nonce, ident)):
            self.badlog.warning(ident, "dropped a pong with a bad mac from %r (wrong key?)", ident)
            return
        if self.track_fds:
            try:
                fd = frames[1].get(zmq.SRCFD)
            except (AttributeError, zmq.ZMQError):  # pragma: no cover - a libzmq without SRCFD
                self.track_fds = False
                log.warning("this libzmq does not say which connection a pong came on: heartbeats only")
            else:
                if self.ident_fd.get(ident) != fd and (ident in self.hearts or ident in self.expected):
                    self._track_fd(ident, fd)
        if ident in self.hearts:
            self.responses.add(ident)
            if self.disconnected:
                handle = self.disconnected.pop(ident, None)
                if handle is not None:  # it reconnected within the grace
                    handle.cancel()
        elif ident in self.expected:
            self.expected.discard(ident)
            self.hearts[ident] = 0
            self.responses.add(ident)
            self.on_new_heart(ident)
