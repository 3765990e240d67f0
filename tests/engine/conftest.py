"""A minimal fake controller (real zmq sockets, real wire.Session) and a real ipengine process to test.

The fake binds every engine-facing socket the way docs/protocol.md says the controller does, answers
registration as told, pings from a thread, and lets a test send requests as a client would through the
controller. It is also the tool for feeding the engine bad input.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from ipcluster import wire
from ipcluster.profiles.connection import new_key, write_connection_file

CLIENT_ID = b"test-client"


class FakeController:
    """Binds the engine-facing sockets on 127.0.0.1 random ports and plays the controller's part."""

    def __init__(
        self, tmp_path: Path, hb_period: int = 200, hb_misses: int = 5, key: str | None = None
    ) -> None:
        self.context = zmq.Context()
        self.key = key if key is not None else new_key()
        self.session = wire.Session(self.key, "hmac-sha256")
        self.hb_period = hb_period
        self.hb_misses = hb_misses
        self.sockets: dict[str, zmq.Socket] = {}
        ports: dict[str, int] = {}
        for name, kind in (
            ("registration", zmq.ROUTER),
            ("mux", zmq.ROUTER),
            ("task", zmq.ROUTER),
            ("control", zmq.ROUTER),
            ("iopub", zmq.SUB),
        ):
            sock = self.context.socket(kind)
            sock.setsockopt(zmq.LINGER, 0)
            if kind == zmq.SUB:
                sock.setsockopt(zmq.SUBSCRIBE, b"")
            ports[name] = sock.bind_to_random_port("tcp://127.0.0.1")
            self.sockets[name] = sock
        # The heart sockets belong to the pinger thread; bound here so the file can name their ports.
        self.ping = self.context.socket(zmq.PUB)
        self.ping.setsockopt(zmq.LINGER, 0)
        self.pong = self.context.socket(zmq.ROUTER)
        self.pong.setsockopt(zmq.LINGER, 0)
        ports["hb_ping"] = self.ping.bind_to_random_port("tcp://127.0.0.1")
        ports["hb_pong"] = self.pong.bind_to_random_port("tcp://127.0.0.1")
        self.ports = ports
        self.file = tmp_path / "security" / "ipcontroller-engine.json"
        write_connection_file(
            self.file,
            {
                "key": self.key,
                "signature_scheme": "hmac-sha256",
                "transport": "tcp",
                "interface": "127.0.0.1",
                "location": "127.0.0.1",
                "ssh": "",
                **ports,
                "hb_period": hb_period,
                "hb_misses": hb_misses,
                "url": f"tcp://127.0.0.1:{ports['registration']}",
                "cluster_id": "",
            },
        )
        self.pongs: list[tuple[bytes, bytes, bool, float]] = []  # (ident, nonce, mac ok, time)
        self.pong_event = threading.Event()
        self._pinging = threading.Event()
        self._stop = threading.Event()
        self._pinger = threading.Thread(target=self._ping_loop, daemon=True)
        self._pinger.start()
        self.engine_uuid: bytes = b""
        self.engine_id = 0

    # -- heartbeat ----------------------------------------------------------------------------------

    def start_pinging(self) -> None:
        self._pinging.set()

    def stop_pinging(self) -> None:
        self._pinging.clear()

    def _ping_loop(self) -> None:
        signer = self.session.signer
        next_ping = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_ping:
                next_ping = now + self.hb_period / 1000
                if self._pinging.is_set():
                    self.ping.send_multipart([b"ping", os.urandom(16)])
            if self.pong.poll(max(1, (next_ping - time.monotonic()) * 1000)):
                ident, nonce, mac = self.pong.recv_multipart()
                ok = mac == signer.sign([nonce + ident])
                self.pongs.append((ident, nonce, ok, time.monotonic()))
                self.pong_event.set()
        self.ping.close(0)
        self.pong.close(0)

    def wait_for_pong(self, timeout: float = 10) -> None:
        """Wait for the next pong, meanwhile letting the iopub SUB attach the engine's connection.

        A bound zmq socket attaches a new peer (and a SUB sends it its subscriptions) only when its
        owning thread touches it; the real controller's event loop does so at once.
        """
        self.pong_event.clear()
        deadline = time.monotonic() + timeout
        while not self.pong_event.wait(0.01):
            self.sockets["iopub"].getsockopt(zmq.EVENTS)
            assert time.monotonic() < deadline, "the engine's heart did not answer"

    # -- registration -------------------------------------------------------------------------------

    def recv(self, channel: str, timeout: float = 10) -> tuple[list[bytes], dict[str, Any]]:
        sock = self.sockets[channel]
        assert sock.poll(timeout * 1000), f"nothing arrived on {channel} within {timeout} s"
        frames = sock.recv_multipart()
        idents, rest = wire.feed_identities(frames)
        return idents, self.session.deserialize(rest)

    def accept_registration(self, engine_id: int = 0, timeout: float = 20) -> dict[str, Any]:
        idents, msg = self.recv("registration", timeout)
        assert msg["msg_type"] == "registration_request"
        self.engine_uuid = idents[0]
        self.engine_id = engine_id
        assert msg["content"]["uuid"].encode() == self.engine_uuid
        self.session.send(
            self.sockets["registration"],
            "registration_reply",
            {"status": "ok", "id": engine_id, "hb_period": self.hb_period, "hb_misses": self.hb_misses},
            parent=msg["header"],
            idents=idents,
        )
        self.start_pinging()
        return msg

    # -- requests, as a client through the controller -------------------------------------------------

    def send(
        self,
        channel: str,
        msg_type: str,
        content: dict[str, Any] | None = None,
        buffers: list[Any] = (),  # type: ignore[assignment]
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self.session.send(
            self.sockets[channel],
            msg_type,
            content or {},
            metadata=metadata,
            buffers=buffers,
            idents=[self.engine_uuid, CLIENT_ID],
        )

    def apply(self, f: Any, *args: Any, channel: str = "mux", **kwargs: Any) -> dict[str, Any]:
        return self.send(channel, "apply_request", {}, wire.pack_apply_message(f, args, kwargs))

    def reply(self, channel: str = "mux", timeout: float = 20) -> dict[str, Any]:
        idents, msg = self.recv(channel, timeout)
        assert idents == [self.engine_uuid, CLIENT_ID]
        return msg

    def iopub(self, timeout: float = 10) -> tuple[bytes, dict[str, Any]]:
        sock = self.sockets["iopub"]
        assert sock.poll(timeout * 1000), "no iopub message arrived"
        frames = sock.recv_multipart()
        idents, rest = wire.feed_identities(frames)
        return idents[0], self.session.deserialize(rest)

    def iopub_for(self, parent_id: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """The next ``count`` iopub messages whose parent is ``parent_id`` (others are skipped)."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            _topic, msg = self.iopub(max(0.01, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == parent_id:
                found.append(msg)
        return found

    def close(self) -> None:
        self._stop.set()
        self._pinger.join(5)
        for sock in self.sockets.values():
            sock.close(0)
        self.context.term()


class EngineProcess:
    """A real ``python -m ipcluster.engine`` process; stderr goes to a file the test can read."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.stderr_path = tmp_path / f"engine-{time.monotonic_ns()}.err"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ipcluster.engine", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env={**os.environ, **(env or {})},
        )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait(self, timeout: float = 20) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._stderr.close()


@pytest.fixture
def fake_controller(tmp_path: Path) -> Iterator[FakeController]:
    ctl = FakeController(tmp_path)
    yield ctl
    ctl.close()


@pytest.fixture
def start_engine(tmp_path: Path) -> Iterator[Any]:
    """start_engine(*args) -> EngineProcess; every engine started is killed at teardown."""
    started: list[EngineProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> EngineProcess:
        eng = EngineProcess(tmp_path, *args, env=env)
        started.append(eng)
        return eng

    yield start
    for eng in started:
        eng.stop()


@pytest.fixture
def engine(fake_controller: FakeController, start_engine: Any) -> EngineProcess:
    """A registered engine (id 0) served by the fake controller, its heart already answering."""
    eng = start_engine("--file", str(fake_controller.file), "--log-level", "debug")
    fake_controller.accept_registration(engine_id=0)
    fake_controller.wait_for_pong()
    return eng
