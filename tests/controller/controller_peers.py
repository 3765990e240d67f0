"""Fake engines and clients that speak the raw protocol (docs/protocol.md) to a real controller.

They use real zmq sockets and a real wire.Session, so the controller is tested exactly as engines and
clients will drive it, including with bad input.
"""

from __future__ import annotations

import threading
import uuid as uuidlib
from pathlib import Path
from typing import Any

import zmq

from ipcluster import wire
from ipcluster.profiles import read_connection_file, url_for

TIMEOUT_MS = 10_000


def recv_msg(sock: zmq.Socket, session: wire.Session, timeout_ms: int = TIMEOUT_MS):
    """(idents, msg) of the next message; AssertionError on timeout."""
    if not sock.poll(timeout_ms):
        raise AssertionError(f"no message within {timeout_ms} ms")
    frames = sock.recv_multipart()
    idents, rest = wire.feed_identities(frames)
    return idents, session.deserialize(rest)


def nothing_within(sock: zmq.Socket, timeout_ms: int) -> bool:
    return not sock.poll(timeout_ms)


class Heart(threading.Thread):
    """Answers pings with a signed pong until stopped or paused (a stopped heart means a dead engine)."""

    def __init__(self, ctx: zmq.Context, info: dict[str, Any], ident: bytes, session: wire.Session) -> None:
        super().__init__(daemon=True)
        self.ctx, self.info, self.engine_ident, self.session = ctx, info, ident, session
        self.beating = threading.Event()
        self.beating.set()
        self.stopped = threading.Event()
        self.bad_mac = False
        self.pongs = 0

    def run(self) -> None:
        sub = self.ctx.socket(zmq.SUB)
        pong = self.ctx.socket(zmq.DEALER)
        sub.linger = pong.linger = 0
        sub.setsockopt(zmq.SUBSCRIBE, b"ping")
        pong.setsockopt(zmq.IDENTITY, self.engine_ident)
        sub.connect(url_for(self.info, "hb_ping"))
        pong.connect(url_for(self.info, "hb_pong"))
        try:
            while not self.stopped.is_set():
                if not sub.poll(50):
                    continue
                _, nonce = sub.recv_multipart()
                if not self.beating.is_set():
                    continue
                mac = self.session.signer.sign([nonce + self.engine_ident])
                if self.bad_mac:
                    mac = b"0" * len(mac)
                pong.send_multipart([nonce, mac])
                self.pongs += 1
        finally:
            sub.close()
            pong.close()


class FakeEngine:
    """An engine made of sockets: registers, beats, receives requests and sends replies on demand."""

    def __init__(self, engine_file: Path, key: str | None = None, uuid: str | None = None, beat: bool = True):
        self.info = read_connection_file(engine_file)
        self.session = wire.Session(self.info["key"] if key is None else key, self.info["signature_scheme"])
        self.uuid = uuid or uuidlib.uuid4().hex
        self.ident = self.uuid.encode("ascii")
        self.ctx = zmq.Context()
        self.sockets: dict[str, zmq.Socket] = {}
        for name in ("registration", "mux", "task", "control"):
            sock = self.ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.setsockopt(zmq.IDENTITY, self.ident)
            sock.connect(url_for(self.info, name))
            self.sockets[name] = sock
        self.iopub = self.ctx.socket(zmq.PUB)
        self.iopub.linger = 0
        self.iopub.connect(url_for(self.info, "iopub"))
        self.heart = Heart(self.ctx, self.info, self.ident, self.session)
        self.beat = beat
        self.id: int | None = None

    def __getattr__(self, name: str) -> zmq.Socket:
        try:
            return self.__dict__["sockets"][name]
        except KeyError:
            raise AttributeError(name) from None

    def request_registration(self, eid: int | None = None) -> dict[str, Any]:
        self.session.send(self.registration, "registration_request", {"uuid": self.uuid, "id": eid})
        _, reply = recv_msg(self.registration, self.session)
        return reply

    def register(self, eid: int | None = None) -> int:
        reply = self.request_registration(eid)
        assert reply["content"]["status"] == "ok", reply["content"]
        self.id = reply["content"]["id"]
        if self.beat and not self.heart.is_alive():
            self.heart.start()
        return self.id

    def recv(self, channel: str = "mux", timeout_ms: int = TIMEOUT_MS):
        """(client_idents, request msg) from the controller on a channel."""
        return recv_msg(self.sockets[channel], self.session, timeout_ms)

    def reply(self, channel: str, idents, request: dict, content=None, metadata=None, buffers=()) -> dict:
        content = {"status": "ok"} if content is None else content
        md = {
            "engine_id": self.id,
            "engine_uuid": self.uuid,
            "status": content.get("status"),
            "dependencies_met": True,
        }
        md.update(metadata or {})
        reply_type = request["msg_type"].replace("_request", "_reply")
        return self.session.send(
            self.sockets[channel],
            reply_type,
            content,
            parent=request["header"],
            metadata=md,
            idents=idents,
            buffers=buffers,
        )

    def publish(self, msg_type: str, content: dict, parent: dict) -> None:
        topic = f"engine.{self.id}.{msg_type}".encode()
        self.session.send(self.iopub, msg_type, content, parent=parent["header"], idents=[topic])

    def stop_beating(self) -> None:
        self.heart.beating.clear()

    def close(self) -> None:
        self.heart.stopped.set()
        if self.heart.is_alive():
            self.heart.join(5)
        for sock in self.sockets.values():
            sock.close(0)
        self.iopub.close(0)
        self.ctx.destroy(linger=0)


class FakeClient:
    """A client made of sockets: query, mux/task/control DEALERs, notification and iopub SUBs."""

    def __init__(self, client_file: Path, key: str | None = None):
        self.info = read_connection_file(client_file)
        self.session = wire.Session(self.info["key"] if key is None else key, self.info["signature_scheme"])
        self.ctx = zmq.Context()
        self.sockets: dict[str, zmq.Socket] = {}
        for name, chan in (
            ("query", "registration"),
            ("mux", "mux"),
            ("task", "task"),
            ("control", "control"),
        ):
            sock = self.ctx.socket(zmq.DEALER)
            sock.linger = 0
            sock.setsockopt(zmq.IDENTITY, self.session.bsession)
            sock.connect(url_for(self.info, chan))
            self.sockets[name] = sock
        for name in ("notification", "iopub"):
            sock = self.ctx.socket(zmq.SUB)
            sock.linger = 0
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(url_for(self.info, name))
            self.sockets[name] = sock

    def __getattr__(self, name: str) -> zmq.Socket:
        try:
            return self.__dict__["sockets"][name]
        except KeyError:
            raise AttributeError(name) from None

    def query(self, msg_type: str, content: dict | None = None, timeout_ms: int = TIMEOUT_MS) -> dict:
        self.session.send(self.query_sock, msg_type, content or {})
        _, reply = recv_msg(self.query_sock, self.session, timeout_ms)
        return reply

    @property
    def query_sock(self) -> zmq.Socket:
        return self.sockets["query"]

    def apply(
        self, channel: str, engine_uuid: str | None = None, metadata=None, buffers=(b"payload",)
    ) -> dict:
        """Send an apply_request on mux/control (to ``engine_uuid``) or task (load-balanced)."""
        idents = [engine_uuid.encode("ascii")] if engine_uuid else []
        return self.session.send(
            self.sockets[channel], "apply_request", {}, metadata=metadata, idents=idents, buffers=buffers
        )

    def recv(self, channel: str = "mux", timeout_ms: int = TIMEOUT_MS) -> dict:
        return recv_msg(self.sockets[channel], self.session, timeout_ms)[1]

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(0)
        self.ctx.destroy(linger=0)
