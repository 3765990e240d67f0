"""Small, fast helpers for frames on the relay hot path.

Frames may arrive as bytes or as zmq.Frame (received with copy=False); both work here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq

from ipcluster.error import MalformedMessage
from ipcluster.wire import DELIM, Session

_DLEN = len(DELIM)
_SNDMORE = int(zmq.SNDMORE)
# The backend's send skips the sugar layer's per-frame flag enums; with copy=True a zmq.Frame still goes
# out without a copy (zmq_msg_copy) while small bytes are memcpy'd, the cheapest path for both.
_send = zmq.backend.Socket.send


def as_bytes(frame: Any) -> bytes:
    return frame if type(frame) is bytes else frame.bytes


def client_uuid(ident: bytes) -> str:
    """The client's session id from the identity of one of its sockets: ``<session>`` or, for a sync lane,
    ``<session>.<n>`` (docs/protocol.md §2). Records keep the session, whichever socket sent the request."""
    return ident.split(b".", 1)[0].decode("ascii", "replace")


def is_delim(frame: Any) -> bool:
    return len(frame) == _DLEN and as_bytes(frame) == DELIM


def forward(sock: zmq.Socket, frames: Sequence[Any]) -> None:
    """Send a multipart message whose frames are bytes or received zmq.Frames, without copying buffers.

    Raises zmq.ZMQError (EHOSTUNREACH on a ROUTER_MANDATORY socket) on the first frame, before anything
    was sent, when the peer is gone.
    """
    last = len(frames) - 1
    for i in range(last):
        _send(sock, frames[i], _SNDMORE, True)
    _send(sock, frames[last], 0, True)


def open_relayed(session: Session, frames: Sequence[Any], delim_at: int) -> dict[str, Any]:
    """Check the layout and signature of a message the controller relays, buffers left for the endpoint.

    ``delim_at`` is where the delimiter must sit after the routing frames. Raises a WireError (malformed,
    unsigned, badly signed or replayed) that says why, for the caller to log against the peer.
    """
    if len(frames) < delim_at + 6 or not is_delim(frames[delim_at]):
        raise MalformedMessage(
            f"malformed: expected {delim_at} routing frame(s), the delimiter, a signature and 4 JSON frames"
        )
    return session.deserialize(frames[delim_at + 1 :], check_buffers=False)
