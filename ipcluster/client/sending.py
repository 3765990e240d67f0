"""How the Client builds, signs and sends requests (a mixin: the state lives on the Client).

These methods run in the caller's thread: frames are built and signed here and handed to the IO thread
(or sent on a sync lane), so signing never waits behind the network. Big buffers for engines on this host
go through shared memory (docs/protocol.md §1.1).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import orjson

from ipcluster import error, wire
from ipcluster.wire import PROTOCOL_VERSION
from ipcluster.wire.shm import ShmExporter

from . import io as clientio
from .asyncresult import AsyncResult
from .metadata import Metadata

if TYPE_CHECKING:
    from .retention import History, Retention

ZERO_COPY_THRESHOLD = 64 * 1024


def _small(buffers: Any) -> bool:
    """True when every buffer is small enough that copying beats zero-copy bookkeeping."""
    for b in buffers:
        if (b.nbytes if isinstance(b, memoryview) else len(b)) >= ZERO_COPY_THRESHOLD:
            return False
    return True


class SendTracker:
    """What ``track=True`` gives an AsyncResult (``ar.sent``, ``ar.wait_for_send()``).

    A tracked call copies its buffers before it returns, so the caller may modify the arrays it passed at
    once: the tracker is done from the start. (Untracked large arrays travel zero-copy: do not modify them
    until their result is back.)
    """

    done = True

    def wait(self, timeout: float | None = None) -> bool:
        return True


def _owned(buffers: Any) -> list[Any]:
    """The buffers as bytes the caller cannot change any more (``track=True``)."""
    return [b if isinstance(b, bytes) else bytes(b) for b in buffers]


class RequestSender:
    """The Client's sending half."""

    session: wire.Session
    metadata: dict[str, Metadata]
    outstanding: set[str]
    history: History
    _closed: bool
    _hub_shutdown: bool
    _timeout: float
    _msg_prefix: str
    _ids: Any
    _io: clientio.ClientIO
    _shm: ShmExporter
    _pending: dict[str, tuple[AsyncResult, int]]
    _queries: dict[str, Future]
    _retention: Retention
    # (the last function pickle sent, its digest): a loop of apply calls hashes its function once
    _head_digest: tuple[bytes, str] | None = None

    # -- building and sending messages (user threads) ------------------------------------------------

    def _new_msg_id(self) -> str:
        return f"{self._msg_prefix}{next(self._ids):x}"

    def _frames(
        self,
        msg_type: str,
        content: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: list[Any] | tuple = (),
        digests: list[str] | None = None,
        ident: bytes | None = None,
        shm: list[dict[str, Any] | None] | None = None,
    ) -> tuple[dict[str, Any], list[Any]]:
        """(header, frames) of one signed message; ``digests`` lets one set of buffers go to many engines
        without hashing them again; ``shm`` names the buffers sent through shared memory (their frames are
        empty, their digests are of the real bytes)."""
        session = self.session
        now = wire.utcnow()
        if digests is None:
            digests = self._digests(buffers) if buffers else []
        header = {
            "msg_id": self._new_msg_id(),
            "msg_type": msg_type,
            "session": session.session,
            "username": session.username,
            "date": now.isoformat(),
            "version": PROTOCOL_VERSION,
            "buffers": digests,
        }
        if shm is not None:
            header["shm"] = shm
        parts = [
            orjson.dumps(header),
            b"{}",
            orjson.dumps(metadata) if metadata else b"{}",
            orjson.dumps(content) if content else b"{}",
        ]
        signature = session.signer.sign(parts)
        frames = [wire.DELIM, signature, *parts, *buffers]
        if ident is not None:
            frames.insert(0, ident)
        header["_submitted"] = now  # not sent: the frames are already built
        return header, frames

    def _digests(self, buffers: list[Any] | tuple) -> list[str]:
        if not self.session.secure:
            return []
        digest = self.session.signer.digest_buffer
        head = buffers[0]
        memo = self._head_digest
        if memo is not None and memo[0] is head:  # the same (immutable) function pickle as last time
            first = memo[1]
        else:
            first = digest(head if not hasattr(head, "buffer") else head.buffer)
            if type(head) is bytes:
                self._head_digest = (head, first)
        return [first, *(digest(b if not hasattr(b, "buffer") else b.buffer) for b in buffers[1:])]

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Client is closed: create a new one")

    def _submit(
        self,
        channel: bytes,
        msg_type: str,
        requests: list[tuple[bytes | None, int | None]],
        content: dict[str, Any] | None = None,
        buffers: list[Any] | tuple = (),
        metadata: dict[str, Any] | None = None,
        make_result: Any = AsyncResult,
        **ar_kwargs: Any,
    ) -> AsyncResult:
        """Send one message per (engine ident or None, engine id) and return the AsyncResult tracking them."""
        self._check_open()
        if ar_kwargs.pop("track", False):
            buffers = _owned(buffers)
            ar_kwargs["tracker"] = SendTracker()
        shared = self._share(channel, buffers, [ident for ident, _ in requests])
        if shared is not None:
            digests = shared[3]
        else:
            digests = self._digests(list(buffers)) if buffers else []
        built = []
        for ident, eid in requests:
            if shared is not None and ident in shared[0]:
                header, frames = self._frames(
                    msg_type, content, metadata, shared[1], digests, ident, shared[2]
                )
            else:
                header, frames = self._frames(msg_type, content, metadata, buffers, digests, ident)
            built.append((header, frames, ident, eid))
        msg_ids = [b[0]["msg_id"] for b in built]
        ar = make_result(self, msg_ids, **ar_kwargs)
        self._register(ar, built, metadata)
        self._io.send_many(channel, [b[1] for b in built], copy=_small(buffers))
        return ar

    def _share(
        self, channel: bytes, buffers: Any, idents: list[bytes | None]
    ) -> tuple[set[bytes], list[Any], list[dict[str, Any] | None], list[str]] | None:
        """Big buffers of a direct request written once to shared memory for the engines on this host:
        (those engines' idents, the frames to send them, the header's shm entries, the buffers' digests),
        or None. The digests are computed while the files are written."""
        if channel != clientio.MUX or not buffers or not self._shm.wants(buffers):
            return None
        local = {ident for ident in idents if ident is not None and self._shm.is_local(ident.decode("ascii"))}
        if not local:
            return None
        buffers = list(buffers)
        exported = self._shm.export_while(buffers, lambda: self._digests(buffers))
        if exported is None:
            return None
        (frames, entries), digests = exported
        return local, frames, entries, digests

    def _register(self, ar: AsyncResult, built: list[tuple], metadata: dict[str, Any] | None) -> None:
        after = follow = None
        if metadata:
            after, follow = metadata.get("after"), metadata.get("follow")
        for i, (header, _, ident, eid) in enumerate(built):
            msg_id = header["msg_id"]
            self.metadata[msg_id] = Metadata(
                msg_id=msg_id,
                submitted=header["_submitted"],
                engine_uuid=ident.decode() if ident else None,
                engine_id=eid,
                after=after,
                follow=follow,
            )
            self._pending[msg_id] = (ar, i)
            shm = header.get("shm")
            if shm:
                self._shm.hold(msg_id, shm)
            self.outstanding.add(msg_id)
            self.history.append(msg_id)
        self._retention.track(ar, (b[0]["msg_id"] for b in built))

    def _submit_batch(
        self,
        channel: bytes,
        msg_type: str,
        items: list[tuple[Any, Any, list[Any], dict | None]],
        make_result: Any,
        **ar_kwargs: Any,
    ) -> AsyncResult:
        """Send many apply requests, each (engine ident or None, engine id, buffers, metadata), tracked by one
        AsyncResult."""
        self._check_open()
        if ar_kwargs.pop("track", False):
            items = [(ident, eid, _owned(buffers), md) for ident, eid, buffers, md in items]
            ar_kwargs["tracker"] = SendTracker()
        built = []
        for ident, eid, buffers, metadata in items:
            shared = self._share(channel, buffers, [ident])
            if shared is not None:
                header, frames = self._frames(
                    msg_type, None, metadata, shared[1], shared[3], ident, shared[2]
                )
            else:
                header, frames = self._frames(msg_type, None, metadata, buffers, None, ident)
            built.append((header, frames, ident, eid))
        ar = make_result(self, [b[0]["msg_id"] for b in built], **ar_kwargs)
        self._register(ar, built, items[0][3] if items else None)
        self._io.send_many(channel, [b[1] for b in built], copy=all(_small(item[2]) for item in items))
        return ar

    def _query(self, msg_type: str, content: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        """Send a hub request on the query socket and return the reply message (or raise its error)."""
        self._check_open()
        if self._hub_shutdown:
            raise error.EngineError("the controller has shut down: start a new cluster and a new Client")
        header, frames = self._frames(msg_type, content)
        future: Future = Future()
        self._queries[header["msg_id"]] = future
        self._io.send(clientio.QUERY, frames)
        wait = max(self._timeout, 30.0) if timeout is None else timeout
        try:
            msg = future.result(wait)
        except TimeoutError:
            self._queries.pop(header["msg_id"], None)
            raise error.TimeoutError(f"the controller did not answer {msg_type} within {wait:g} s") from None
        if msg["content"].get("status") == "error":
            raise error.unwrap_exception(msg["content"])
        return msg
