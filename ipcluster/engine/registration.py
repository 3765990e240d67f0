"""Registering with the controller (docs/protocol.md §5), and saying goodbye.

Every failure is a RegistrationFailed carrying the one line the user sees and the exit status (4), so
the app can print it and exit without a traceback.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from ipcluster import wire
from ipcluster.error import WireError

log = logging.getLogger("ipcluster.engine")

EXIT_REGISTRATION_FAILED = 4


class RegistrationFailed(Exception):
    """Registration timed out, was refused, or our key was rejected."""

    exit_code = EXIT_REGISTRATION_FAILED


def open_registration_socket(context: zmq.Context, url: str, engine_uuid: bytes) -> zmq.Socket:
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, engine_uuid)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(url)
    return sock


def register(
    session: wire.Session,
    sock: zmq.Socket,
    url: str,
    engine_uuid: str,
    timeout: float,
    connection_file: str,
    engine_id: int | None = None,
) -> dict[str, Any]:
    """Send registration_request and return the ok reply content: {status, id, hb_period, hb_misses}.

    Messages that fail verification while we wait are dropped (logged once); only a reply to our own
    request counts.
    """
    request = session.send(sock, "registration_request", {"uuid": engine_uuid, "id": engine_id})
    request_id = request["msg_id"]
    deadline = time.monotonic() + timeout
    complaints = wire.RateLimitedLog(log)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not sock.poll(remaining * 1000):
            raise RegistrationFailed(
                f"controller at {url} did not answer registration within {timeout:g} s; "
                "is it running? (ipcluster list)"
            )
        frames = sock.recv_multipart()
        try:
            _idents, rest = wire.feed_identities(frames)
        except WireError as exc:
            complaints.warning("registration", "dropped a bad message on the registration socket: %s", exc)
            continue
        if wire.is_auth_error(rest) is not None:
            raise RegistrationFailed(
                f"the controller rejected this engine's signature: the key in {connection_file} does not "
                "match the controller's; copy the current ipcontroller-engine.json"
            )
        try:
            msg = session.deserialize(rest)
        except WireError as exc:
            complaints.warning("registration", "dropped a bad message on the registration socket: %s", exc)
            continue
        parent_id = msg["parent_header"].get("msg_id")
        if msg["msg_type"] != "registration_reply" or (parent_id and parent_id != request_id):
            continue
        content = msg["content"]
        if content.get("status") != "ok":
            reason = f"{content.get('ename', 'Error')}: {content.get('evalue', 'no reason given')}"
            raise RegistrationFailed(f"controller at {url} refused registration: {reason}")
        if not isinstance(content.get("id"), int):
            raise RegistrationFailed(f"controller at {url} sent a registration reply without an engine id")
        return content


def unregister(session: wire.Session, sock: zmq.Socket, engine_id: int) -> None:
    """Tell the controller we are leaving (best effort: we do not wait for the reply)."""
    try:
        session.send(sock, "unregistration_request", {"id": engine_id})
    except zmq.ZMQError:
        pass
