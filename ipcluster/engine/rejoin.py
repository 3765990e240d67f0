"""Re-registering after a connection blip, under the same engine id (docs/protocol.md §5).

When pings stop for longer than the controller's failure window (a tunnel reconnecting, a network blip that
``--hb-grace`` lets the engine survive), the controller has unregistered the engine while its process, and
its namespace, lived on. When pings come back the heart calls :meth:`Rejoiner.gap`; a short-lived thread
then asks the controller (``connection_request``) whether this engine's id still maps to its uuid, and if
not sends ``registration_request {uuid, id}`` so the controller gives the old id back. It asks again one
failure window later, because a pong delayed by the reconnect can make the controller fail the engine just
after the first check. Rare by construction: nothing here runs per message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from ipcluster import wire
from ipcluster.error import WireError

from .registration import RegistrationFailed, register

log = logging.getLogger("ipcluster.engine")


class Rejoiner:
    """Checks, after each heartbeat gap, that the controller still has this engine; re-registers if not."""

    def __init__(
        self,
        context: zmq.Context,
        session: wire.Session,
        url: str,
        engine_uuid: str,
        engine_id: int,
        window_s: float,
        on_lost: Callable[[], None],
    ) -> None:
        self.context = context
        # A session of our own: the main thread's Session is not shared across threads.
        self.session = wire.Session(session.key, session.signature_scheme, session=engine_uuid)
        self.url = url
        self.engine_uuid = engine_uuid
        self.engine_id = engine_id
        self.window = window_s
        self.on_lost = on_lost
        self.rejoined = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._again = False
        self._closed = threading.Event()

    def gap(self) -> None:
        """Pings resumed after a silence: check (in the background) that we are still registered."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._again = True
                return
            self._thread = threading.Thread(target=self._run, name="ipengine-rejoin", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._closed.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(2.0)

    def _run(self) -> None:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.url)
        try:
            while True:
                for delay in (0.0, self.window):
                    if self._closed.wait(delay):
                        return
                    if not self._check(sock):
                        return
                with self._lock:
                    if not self._again:
                        return
                    self._again = False
        except zmq.ZMQError:
            return  # the context is being torn down: the engine is exiting
        finally:
            sock.close(0)

    def _check(self, sock: zmq.Socket) -> bool:
        """One check; False when the engine must stop (the controller gave another id)."""
        engines = self._registered_engines(sock)
        if engines is None or engines.get(str(self.engine_id)) == self.engine_uuid:
            return True
        try:
            reply = register(self.session, sock, self.url, self.engine_uuid, max(self.window, 5.0), "",
                             self.engine_id)  # fmt: skip
        except RegistrationFailed as exc:
            log.warning("could not re-register engine %d after a connection blip: %s", self.engine_id, exc)
            return True
        if reply["id"] != self.engine_id:
            log.error(
                "the controller no longer knows engine %d (it offered id %d); exiting",
                self.engine_id,
                reply["id"],
            )
            self.on_lost()
            return False
        self.rejoined += 1
        log.warning(
            "registration lapsed during a connection blip; re-registered as engine %d", self.engine_id
        )
        return True

    def _registered_engines(self, sock: zmq.Socket) -> dict[str, Any] | None:
        """The controller's ``{id: uuid}`` map, or None if it did not answer in time."""
        request = self.session.send(sock, "connection_request", {})
        deadline = time.monotonic() + max(self.window, 2.0)
        while (remaining := deadline - time.monotonic()) > 0 and sock.poll(remaining * 1000):
            try:
                _idents, rest = wire.feed_identities(sock.recv_multipart())
                msg = self.session.deserialize(rest)
            except WireError:
                continue
            if msg["parent_header"].get("msg_id") == request["msg_id"]:
                return msg["content"].get("engines") or {}
        return None
