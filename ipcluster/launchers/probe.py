"""Ask a running controller how many engines it has, without a Client (docs/protocol.md §5).

Sends a signed ``connection_request`` on the registration ROUTER and counts the engines in the reply. The
CLI uses it to show engines registering and to report them in ``ipcluster list``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import zmq

from ipcluster.error import AuthenticationError, WireError
from ipcluster.profiles.connection import read_connection_file, url_for
from ipcluster.wire import Session, feed_identities, is_auth_error


class ControllerProbe:
    """One DEALER to the controller's registration socket, reused across polls; close it (or use ``with``)."""

    def __init__(self, connection_file: Path) -> None:
        self.info = read_connection_file(connection_file)
        self.session = Session(self.info.get("key", ""), self.info.get("signature_scheme", "hmac-sha256"))
        self.context = zmq.Context()
        self.socket: zmq.Socket | None = None

    def _connect(self) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IDENTITY, self.session.bsession)
        sock.connect(url_for(self.info, "registration"))
        return sock

    def connection_reply(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The controller's ``connection_reply`` content, or None if it did not answer in ``timeout`` s."""
        if self.socket is None:
            self.socket = self._connect()
        msg = self.session.send(self.socket, "connection_request", {})
        deadline_ms = int(timeout * 1000)
        while self.socket.poll(deadline_ms):
            frames = self.socket.recv_multipart()
            try:
                _, rest = feed_identities(frames)
            except WireError:
                continue
            notice = is_auth_error(rest)
            if notice:
                raise AuthenticationError(f"the controller rejected our signature: {notice}")
            try:
                reply = self.session.deserialize(rest)
            except WireError:
                continue
            if reply["parent_header"].get("msg_id") == msg["msg_id"]:
                return reply["content"]
        # No answer: drop the socket so a late reply cannot be mistaken for the next one.
        self.socket.close(linger=0)
        self.socket = None
        return None

    def engine_count(self, timeout: float = 2.0) -> int | None:
        reply = self.connection_reply(timeout)
        if reply is None or reply.get("status", "ok") != "ok":
            return None
        return len(reply.get("engines") or {})

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
            self.socket = None
        self.context.term()

    def __enter__(self) -> ControllerProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
