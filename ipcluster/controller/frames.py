"""Small, fast helpers for frames on the relay hot path.

Frames may arrive as bytes or as zmq.Frame (received with copy=False); both work here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq

from ipcluster.wire import DELIM

_DLEN = len(DELIM)
_SNDMORE = int(zmq.SNDMORE)
# The backend's send skips the sugar layer's per-frame flag enums; with copy=True a zmq.Frame still goes
# out without a copy (zmq_msg_copy) while small bytes are memcpy'd, the cheapest path for both.
_send = zmq.backend.Socket.send


def as_bytes(frame: Any) -> bytes:
    return frame if type(frame) is bytes else frame.bytes


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
