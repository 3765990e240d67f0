"""Build, sign, send, receive and verify messages: the frame layout of docs/protocol.md §1.

A Session holds the key, the signature scheme and the replay window of one process. It knows nothing of
roles: the controller, engines and client all use it the same way.
"""

from __future__ import annotations

import getpass
import logging
import os
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from hmac import compare_digest
from typing import Any

import orjson
import zmq

from ipcluster.error import InvalidSignature, MalformedMessage, ReplayedMessage

from .reader import send_frames
from .signing import DEFAULT_SCHEME, ReplayWindow, make_signer

PROTOCOL_VERSION = "1.0"
DELIM = b"<IPC|MSG>"
AUTH_ERROR = "auth_error"

log = logging.getLogger("ipcluster.wire")

Frame = Any  # bytes, memoryview or zmq.Frame
_ZFrame = zmq.Frame
_KNOWN_SLOTS = 2  # an apply request's function pickle and its call (arguments) pickle
_KNOWN_MAX = 64 * 1024
_PLAIN = (bytes, memoryview)  # buffers compared as bytes (a received frame's view, a mapped file's)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


_second: tuple[int, str] = (0, "")  # the last whole second formatted by now_iso, and its text


def now_iso() -> str:
    """Now in UTC, ISO-8601 with microseconds and offset (``2026-01-02T03:04:05.678901+00:00``).

    Formats the date and time of day once a second: several stamps go into every reply."""
    global _second
    sec, us = divmod(time.time_ns() // 1000, 1_000_000)
    cached = _second
    if cached[0] != sec:
        cached = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
    return f"{cached[1]}.{us:06d}+00:00"


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value)


def _dumps(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _bytes(frame: Frame) -> bytes:
    if isinstance(frame, bytes):
        return frame
    b = getattr(frame, "bytes", None)  # zmq.Frame
    if b is not None:
        return b
    return bytes(frame)


def _view(frame: Frame) -> Any:
    buf = getattr(frame, "buffer", None)
    return buf if buf is not None else frame


def feed_identities(frames: Sequence[Frame]) -> tuple[list[bytes], list[Frame]]:
    """Split routing identities from the message frames at the delimiter."""
    for i, frame in enumerate(frames[:64]):
        if len(frame) == len(DELIM) and _bytes(frame) == DELIM:
            return [_bytes(f) for f in frames[:i]], list(frames[i + 1 :])
    raise MalformedMessage("no delimiter frame: not an ipcluster message")


class Session:
    """Signs outgoing messages and verifies incoming ones for one process.

    ``key`` is the shared secret from the connection file (an empty key means an unsigned cluster).
    ``replay_window`` bounds how many past signatures are remembered to refuse replays.
    """

    def __init__(
        self,
        key: bytes | str = b"",
        signature_scheme: str = DEFAULT_SCHEME,
        session: str | None = None,
        username: str | None = None,
        replay_window: int = 65536,
    ) -> None:
        self.key = key.encode("ascii") if isinstance(key, str) else key
        self.signature_scheme = signature_scheme
        self.signer = make_signer(self.key, signature_scheme)
        self._secure = bool(self.key) and signature_scheme != "none"  # fixed for the Session's life
        self.session = session or uuid.uuid4().hex
        self.bsession = self.session.encode("ascii")
        self.username = username or _username()
        self.replay = ReplayWindow(replay_window)
        # (digest, bytes) of the last small buffers checked at the first positions: a loop of calls sends the
        # same function pickle (and often the same arguments) each time, hashed once here
        self._known: list[tuple[str, bytes] | None] = [None] * _KNOWN_SLOTS
        self._msg_counter = 0
        # msg ids: a per-process random prefix and a counter; unique without a uuid4 per message.
        self._msg_prefix = f"{uuid.uuid4().hex}-"

    @property
    def secure(self) -> bool:
        return self._secure

    # -- building -----------------------------------------------------------------------------------

    def new_msg_id(self) -> str:
        self._msg_counter += 1
        return f"{self._msg_prefix}{self._msg_counter:x}"

    def msg_header(self, msg_type: str, **extra: Any) -> dict[str, Any]:
        header = {
            "msg_id": self.new_msg_id(),
            "msg_type": msg_type,
            "session": self.session,
            "username": self.username,
            "date": now_iso(),
            "version": PROTOCOL_VERSION,
        }
        header.update(extra)
        return header

    def msg(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        parent: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A message dict: header, parent_header, metadata, content (buffers are added by serialize)."""
        if parent is not None and "header" in parent:
            parent = parent["header"]
        hdr = header if header is not None else self.msg_header(msg_type)
        return {
            "header": hdr,
            "msg_id": hdr["msg_id"],
            "msg_type": hdr["msg_type"],
            "parent_header": dict(parent or {}),
            "metadata": dict(metadata or {}),
            "content": dict(content or {}),
        }

    def serialize(
        self,
        msg: dict[str, Any],
        buffers: Sequence[Frame] = (),
        idents: Sequence[bytes] = (),
        digests: list[str] | None = None,
        shm: list[Any] | None = None,
    ) -> list[Frame]:
        """Frames for a message: idents, delimiter, signature, four JSON frames, buffers.

        Each buffer's digest goes into the signed header, so the buffers are authenticated too. ``digests``
        are given when already computed (and must be, for buffers sent through shared memory: ``shm`` names
        them and their frames are empty, docs/protocol.md §1.1).
        """
        header = msg["header"]
        if not self.secure:
            header["buffers"] = []
        else:
            header["buffers"] = digests if digests is not None else self.digests(buffers)
        if shm:
            header["shm"] = shm
        parts = [
            _dumps(header),
            _dumps(msg.get("parent_header") or {}),
            _dumps(msg.get("metadata") or {}),
            _dumps(msg.get("content") or {}),
        ]
        signature = self.signer.sign(parts)
        return [*idents, DELIM, signature, *parts, *buffers]

    def digests(self, buffers: Sequence[Frame]) -> list[str]:
        """The signed header's per-buffer digests (none for an unsigned cluster)."""
        if not self.secure:
            return []
        return [self.signer.digest_buffer(_view(b)) for b in buffers]

    def send(
        self,
        socket: zmq.Socket,
        msg_type: str,
        content: dict[str, Any] | None = None,
        parent: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: Sequence[Frame] = (),
        idents: Sequence[bytes] = (),
        header: dict[str, Any] | None = None,
        track: bool = False,
        digests: list[str] | None = None,
        shm: list[Any] | None = None,
    ) -> dict[str, Any]:
        """Build, sign and send one message; returns the message dict that was sent."""
        msg = self.msg(msg_type, content, parent, metadata, header)
        frames = self.serialize(msg, buffers, idents, digests, shm)
        if track:
            socket.send_multipart(frames, copy=len(buffers) == 0, track=True)
        else:
            send_frames(socket, frames, copy=len(buffers) == 0)
        return msg

    # -- receiving ----------------------------------------------------------------------------------

    def verify(self, msg_frames: Sequence[Frame], record: bool = True) -> None:
        """Check the signature of [signature, header, parent, metadata, content, ...] and the replay window."""
        if len(msg_frames) < 5:
            raise MalformedMessage(f"{len(msg_frames)} frames after the delimiter, expected at least 5")
        if self.secure:
            self._verify_parts([_bytes(f) for f in msg_frames[:5]], record)

    def _verify_parts(self, parts: list[bytes], record: bool = True) -> None:
        signature = parts[0]
        if not signature:
            raise InvalidSignature("unsigned message")
        if not _compare(signature, self.signer.sign(parts[1:5])):
            raise InvalidSignature("bad signature")
        if record and not self.replay.check_and_add(signature):
            raise ReplayedMessage("replayed message (signature seen before)")

    def deserialize(
        self,
        msg_frames: Sequence[Frame],
        verify: bool = True,
        check_buffers: bool = True,
    ) -> dict[str, Any]:
        """Parse and authenticate the frames after the delimiter.

        ``check_buffers=False`` is for relays that forward buffers untouched: the endpoint checks them.
        """
        if len(msg_frames) < 5:
            raise MalformedMessage(f"{len(msg_frames)} frames after the delimiter, expected at least 5")
        # the five small frames as bytes, once (received zmq.Frames copy on every .bytes)
        parts = [
            f if type(f) is bytes else f.bytes if type(f) is _ZFrame else _bytes(f) for f in msg_frames[:5]
        ]
        secure = self.secure
        if verify and secure:
            self._verify_parts(parts)
        try:
            header = orjson.loads(parts[1])
            parent = orjson.loads(parts[2])
            metadata = orjson.loads(parts[3])
            content = orjson.loads(parts[4])
        except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MalformedMessage(f"a message frame is not JSON: {exc}") from exc
        if type(header) is not dict or "msg_type" not in header or "msg_id" not in header:
            raise MalformedMessage("header lacks msg_id or msg_type")
        buffers = list(msg_frames[5:])
        if secure and verify:
            digests = header.get("buffers") or []
            if len(digests) != len(buffers):
                raise InvalidSignature(f"{len(buffers)} buffers but {len(digests)} signed digests")
            if check_buffers and buffers:
                self.check_buffers(header, buffers)
        return {
            "header": header,
            "msg_id": header["msg_id"],
            "msg_type": header["msg_type"],
            "parent_header": parent if type(parent) is dict else {},
            "metadata": metadata if type(metadata) is dict else {},
            "content": content if type(content) is dict else {},
            "buffers": buffers,
        }

    def check_buffers(self, header: dict[str, Any], buffers: Sequence[Frame]) -> None:
        """Verify each raw buffer against the digest in the (already verified) header."""
        if not self.secure:
            return
        digests = header.get("buffers") or []
        if len(digests) != len(buffers):
            raise InvalidSignature(f"{len(buffers)} buffers but {len(digests)} signed digests")
        known = self._known
        for i, (digest, buf) in enumerate(zip(digests, buffers, strict=True)):
            view = _view(buf)
            plain = i < _KNOWN_SLOTS and type(view) in _PLAIN
            if plain:
                seen = known[i]
                if seen is not None and digest == seen[0] and view == seen[1]:
                    continue  # the same bytes under the same digest as already checked
            if not _compare(digest.encode("ascii"), self.signer.digest_buffer(view).encode("ascii")):
                raise InvalidSignature(f"buffer {i} does not match its signed digest")
            if plain and len(view) <= _KNOWN_MAX:
                known[i] = (digest, bytes(view))

    def recv(
        self, socket: zmq.Socket, flags: int = zmq.NOBLOCK, copy: bool = False
    ) -> tuple[list[bytes], dict[str, Any]] | tuple[None, None]:
        """Receive and verify one message; (None, None) when nothing is waiting (NOBLOCK)."""
        try:
            frames = socket.recv_multipart(flags, copy=copy)
        except zmq.Again:
            return None, None
        idents, rest = feed_identities(frames)
        return idents, self.deserialize(rest)

    # -- the unsigned wrong-key notice (docs/protocol.md §5) -----------------------------------------

    def auth_error_frames(self, idents: Sequence[bytes], evalue: str) -> list[bytes]:
        return [
            *idents,
            DELIM,
            b"",
            _dumps({"msg_type": AUTH_ERROR, "msg_id": "", "date": now_iso()}),
            b"{}",
            b"{}",
            _dumps({"status": "error", "ename": "AuthenticationError", "evalue": evalue}),
        ]


def is_auth_error(msg_frames: Sequence[Frame]) -> str | None:
    """If these frames are the controller's unsigned wrong-key notice, its text; otherwise None."""
    if len(msg_frames) != 5 or _bytes(msg_frames[0]):
        return None
    try:
        header = orjson.loads(_bytes(msg_frames[1]))
        content = orjson.loads(_bytes(msg_frames[4]))
    except ValueError:
        return None
    if isinstance(header, dict) and header.get("msg_type") == AUTH_ERROR:
        return str(content.get("evalue", "signature rejected"))
    return None


_compare = compare_digest  # constant-time comparison of signatures and digests


def _username() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user database entry (containers)
        return os.environ.get("USER", "ipcluster")


class RateLimitedLog:
    """Logs a complaint about a peer at most once per ``interval`` seconds, so garbage cannot flood logs."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[Any, float] = {}

    def warning(self, peer: Any, message: str, *args: Any) -> bool:
        now = time.monotonic()
        key = (peer, message)
        if now - self._last.get(key, -1e9) < self.interval:
            return False
        if len(self._last) > 10000:
            self._last.clear()
        self._last[key] = now
        self.logger.warning(message, *args)
        return True
