"""The mux and control relays (client ROUTER ↔ engine ROUTER) and the iopub relay (SUB → PUB).

Hot path. Per message: one signature check and JSON parse of the four small frames (buffers are neither
copied nor hashed: the engine or client that unpacks them checks their digests), then the same zmq Frames
go out with the routing identities swapped, and only then the hub's record is updated, so the bookkeeping
overlaps with the next hop instead of delaying it. No awaits, no futures.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import Any

import zmq

from ipcluster.error import WireError
from ipcluster.wire import RateLimitedLog, Session, SocketReader

from .frames import as_bytes, forward, open_relayed
from .hub import Hub
from .replies import send_error_reply

log = logging.getLogger("ipcluster.controller")


class DirectRelay:
    """Relays one direct channel (``mux`` or ``control``) between clients and engines.

    Client → controller: ``[client_id, engine_uuid, DELIM, ...]``; controller → engine:
    ``[engine_uuid, client_id, DELIM, ...]``; replies come back the same way round.
    """

    def __init__(
        self,
        channel: str,
        session: Session,
        hub: Hub,
        client_sock: zmq.Socket,
        engine_sock: zmq.Socket,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.channel = channel
        self.session = session
        self.hub = hub
        self.client_sock = client_sock
        self.engine_sock = engine_sock
        self.client_reader = SocketReader(client_sock, self.on_client, loop=loop, copy=False)
        self.engine_reader = SocketReader(engine_sock, self.on_engine, loop=loop, copy=False)
        self.badlog = RateLimitedLog(log)
        hub.channels[channel] = (client_sock, self.client_reader)

    def start(self) -> None:
        self.client_reader.start()
        self.engine_reader.start()

    def stop(self) -> None:
        self.client_reader.stop()
        self.engine_reader.stop()

    def _drop(self, peer: bytes, side: str, why: object) -> None:
        self.badlog.warning(
            peer, "dropped a message on %s (%s side) from %r: %s", self.channel, side, peer, why
        )

    def on_client(self, frames: list[Any]) -> None:
        client_id = as_bytes(frames[0])
        try:
            msg = open_relayed(self.session, frames, 2)
        except WireError as exc:
            self._drop(client_id, "client", exc)
            return
        if type(msg["msg_id"]) is not str:
            self._drop(client_id, "client", "msg_id is not a string")
            return
        ident = as_bytes(frames[1])
        engine = self.hub.by_ident.get(ident)
        if engine is None:
            evalue = f"no registered engine {ident.decode('ascii', 'replace')!r}: it died or never registered"
            send_error_reply(self.session, self.client_sock, client_id, msg["header"], "EngineError", evalue)
            self.client_reader.poke()
            return
        frames[0] = ident
        frames[1] = client_id
        try:
            forward(self.engine_sock, frames)
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            self.hub.direct_request(self.channel, msg, client_id, engine)
            self.hub.direct_unsent(msg["msg_id"], engine)
            evalue = f"engine {engine.id} ({engine.uuid}) is not connected on {self.channel}"
            send_error_reply(
                self.session,
                self.client_sock,
                client_id,
                msg["header"],
                "EngineError",
                evalue,
                engine.id,
                engine.uuid,
            )
            self.client_reader.poke()
            return
        # the record is kept once the request is on its way: the engine works meanwhile (single loop, so
        # its reply cannot be handled before this returns)
        self.hub.direct_request(self.channel, msg, client_id, engine)
        self.engine_reader.poke()

    def on_engine(self, frames: list[Any]) -> None:
        ident = as_bytes(frames[0])
        try:
            msg = open_relayed(self.session, frames, 2)
        except WireError as exc:
            self._drop(ident, "engine", exc)
            return
        engine = self.hub.by_ident.get(ident)
        parent_id = msg["parent_header"].get("msg_id")
        if engine is None or type(parent_id) is not str or parent_id not in engine.inflight:
            self._drop(
                ident, "engine", "a reply to no request in flight (late, after the engine was failed?)"
            )
            return
        forward(self.client_sock, frames[1:])
        self.client_reader.poke()
        self.hub.direct_reply(self.channel, msg, engine)  # the record, once the reply is on its way


class IOPubRelay:
    """Verifies what engines publish and republishes the same frames to clients."""

    def __init__(
        self, session: Session, hub: Hub, sub: zmq.Socket, pub: zmq.Socket, loop: asyncio.AbstractEventLoop
    ):
        self.session = session
        self.hub = hub
        self.sub = sub
        self.pub = pub
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.reader = SocketReader(sub, self.on_message, loop=loop, copy=False)
        self.badlog = RateLimitedLog(log)

    def start(self) -> None:
        self.reader.start()

    def stop(self) -> None:
        self.reader.stop()

    def on_message(self, frames: list[Any]) -> None:
        topic = as_bytes(frames[0]) if frames else b""
        try:
            msg = open_relayed(self.session, frames, 1)
        except WireError as exc:
            self.badlog.warning(topic, "dropped an iopub message (topic %r): %s", topic, exc)
            return
        self.hub.iopub(msg)
        forward(self.pub, frames)
