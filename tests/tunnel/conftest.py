"""Fixtures for the tunnel tests: real sshd servers (tests/real), and a zmq echo server to forward to."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, so `real` imports as a package

from real.fixtures import netns_pair, sshd, sshd_factory  # noqa: E402,F401
from real.sshd import SSHServer  # noqa: E402

from ipcluster.tunnel import SSHConnection, close_all  # noqa: E402


class EchoServer:
    """A zmq ROUTER on 127.0.0.1 that echoes every message, on its own thread; ``url`` is where it listens."""

    def __init__(self, ctx: zmq.Context) -> None:
        self.router = ctx.socket(zmq.ROUTER)
        self.router.linger = 0
        self.port = self.router.bind_to_random_port("tcp://127.0.0.1")
        self.url = f"tcp://127.0.0.1:{self.port}"
        self._stop = ctx.socket(zmq.PAIR)
        self._stop.bind(f"inproc://stop-{id(self)}")
        self._stop_peer = ctx.socket(zmq.PAIR)
        self._stop_peer.connect(f"inproc://stop-{id(self)}")
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self._stop_peer, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if self._stop_peer in ready:
                return
            self.router.send_multipart(self.router.recv_multipart())

    def close(self) -> None:
        self._stop.send(b"")
        self._thread.join(5)
        for sock in (self.router, self._stop, self._stop_peer):
            sock.close(0)


@pytest.fixture
def zctx() -> Iterator[zmq.Context]:
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def echo(zctx: zmq.Context) -> Iterator[EchoServer]:
    server = EchoServer(zctx)
    yield server
    server.close()


def connection_options(server: SSHServer, **extra: object) -> dict[str, object]:
    """Options that use only the test server's files: never the real ~/.ssh or an agent."""
    empty_config = server.directory / "empty_ssh_config"
    empty_config.touch()
    options: dict[str, object] = dict(
        keyfile=str(server.client_key),
        known_hosts=str(server.known_hosts),
        ssh_config=str(empty_config),
        allow_agent=False,
        look_for_keys=False,
        interactive=False,
        connect_timeout=5.0,
    )
    options.update(extra)
    return options


@pytest.fixture
def connect(sshd: SSHServer) -> Iterator[object]:  # noqa: F811 - the imported fixture
    """Factory for SSHConnections to the shared sshd (or another server); all closed after the test."""
    made: list[SSHConnection] = []

    def make(server: SSHServer | None = None, **extra: object) -> SSHConnection:
        target = server or sshd
        conn = SSHConnection(target.server, **connection_options(target, **extra))  # type: ignore[arg-type]
        made.append(conn)
        return conn

    yield make
    for conn in made:
        conn.close()
    close_all()


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """Every test must leave the thread list as it found it (paramiko and loop threads joined on close)."""
    before = set(threading.enumerate())
    yield
    close_all()
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in left:
        thread.join(2)
    left = [t.name for t in left if t.is_alive()]
    assert not left, f"threads left running: {left}"
