"""The signed message protocol (docs/protocol.md): framing, signing, replay window, serialization.

Knows nothing of roles: the controller, the engines and the client all speak through it.
"""

from ipcluster.error import InvalidSignature, MalformedMessage, ReplayedMessage, WireError

from .reader import SocketReader, recv_frames, send_frames
from .serialize import (
    FunctionCache,
    Reference,
    bind_to_namespace,
    deserialize_object,
    interactive,
    is_interactive,
    pack_apply_message,
    resolve_references,
    serialize_function,
    serialize_object,
    unpack_apply_message,
)
from .session import (
    AUTH_ERROR,
    DELIM,
    PROTOCOL_VERSION,
    RateLimitedLog,
    Session,
    feed_identities,
    is_auth_error,
    now_iso,
    parse_date,
    utcnow,
)
from .signing import DEFAULT_SCHEME, SCHEMES, ReplayWindow, blake3_available, make_signer

__all__ = [
    "AUTH_ERROR",
    "DEFAULT_SCHEME",
    "DELIM",
    "PROTOCOL_VERSION",
    "SCHEMES",
    "InvalidSignature",
    "MalformedMessage",
    "RateLimitedLog",
    "FunctionCache",
    "Reference",
    "ReplayWindow",
    "ReplayedMessage",
    "Session",
    "SocketReader",
    "WireError",
    "bind_to_namespace",
    "blake3_available",
    "deserialize_object",
    "feed_identities",
    "interactive",
    "is_auth_error",
    "is_interactive",
    "make_signer",
    "now_iso",
    "pack_apply_message",
    "recv_frames",
    "send_frames",
    "parse_date",
    "resolve_references",
    "serialize_function",
    "serialize_object",
    "unpack_apply_message",
    "utcnow",
]
