"""Self-healing: a cut session or a restarted sshd is reconnected, on the same local ports."""

from __future__ import annotations

import threading

import pytest
import zmq
from test_tunnel_forward import roundtrip

from ipcluster.tunnel import SSHConnectError, TunnelState


class StateLog:
    """Records state changes reported through the callback, and lets a test wait for a sequence."""

    def __init__(self) -> None:
        self.states: list[str] = []
        self.errors: list[object] = []
        self._cond = threading.Condition()

    def __call__(self, _conn, state, error) -> None:
        with self._cond:
            self.states.append(state.value)
            self.errors.append(error)
            self._cond.notify_all()

    def wait_for(self, sequence: list[str], timeout: float = 20.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.states[-len(sequence) :] == sequence, timeout), (
                self.states
            )


def dealer(ctx: zmq.Context, url: str) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 15000
    sock.reconnect_ivl = 50
    sock.connect(url)
    return sock


def test_killed_session_reconnects_and_same_local_port_works(sshd_factory, connect, echo, zctx):
    server = sshd_factory()
    log = StateLog()
    conn = connect(server, on_state=log, backoff=(0.05, 0.5))
    local = conn.forward("127.0.0.1", echo.port)
    url = f"tcp://127.0.0.1:{local}"
    sock = dealer(zctx, url)  # one zmq socket across the blip: it must reconnect by itself
    sock.send(b"before")
    assert sock.recv() == b"before"
    assert server.kill_sessions() >= 1
    log.wait_for(["up", "reconnecting", "up"])
    assert "lost SSH connection" in str(log.errors[1])
    assert conn.forward("127.0.0.1", echo.port) == local
    sock.send(b"after")
    assert sock.recv() == b"after"
    sock.close()


def test_sshd_restart_on_same_port_reconnects(sshd_factory, connect, echo, zctx):
    server = sshd_factory()
    log = StateLog()
    conn = connect(server, on_state=log, backoff=(0.05, 0.3))
    local = conn.forward("127.0.0.1", echo.port)
    server.stop()
    log.wait_for(["up", "reconnecting"])
    assert conn.wait_for_state("reconnecting", timeout=1) is TunnelState.RECONNECTING
    server.start()
    conn.wait_for_state("up", timeout=20)
    assert log.states == ["up", "reconnecting", "up"]
    assert roundtrip(zctx, f"tcp://127.0.0.1:{local}", b"back") == b"back"


def test_reconnect_gives_up_after_reconnect_timeout(sshd_factory, connect, echo):
    server = sshd_factory()
    conn = connect(server, backoff=(0.05, 0.1), reconnect_timeout=0.5)
    conn.forward("127.0.0.1", echo.port)
    server.stop()
    conn.wait_for_state("failed", timeout=20)
    assert isinstance(conn.last_error, SSHConnectError)
    assert "connection refused" in str(conn.last_error).lower()


def test_manual_reconnect_after_failure_keeps_ports(sshd_factory, connect, echo, zctx):
    server = sshd_factory()
    conn = connect(server, backoff=(0.05, 0.1), reconnect_timeout=0.3)
    local = conn.forward("127.0.0.1", echo.port)
    server.stop()
    conn.wait_for_state("failed", timeout=20)
    server.start()
    conn.reconnect()
    conn.wait_for_state("up", timeout=20)
    assert roundtrip(zctx, f"tcp://127.0.0.1:{local}") == b"ping"


def test_no_reconnect_option_fails_at_once(sshd_factory, connect):
    server = sshd_factory()
    conn = connect(server, reconnect=False)
    conn.open()
    server.kill_sessions()
    conn.wait_for_state("failed", timeout=20)


def test_close_joins_every_thread_and_closes_listeners(sshd_factory, connect, echo, zctx):
    server = sshd_factory()
    before = set(threading.enumerate())
    conn = connect(server)
    local = conn.forward("127.0.0.1", echo.port)
    assert roundtrip(zctx, f"tcp://127.0.0.1:{local}") == b"ping"
    assert len(set(threading.enumerate()) - before) == 2  # paramiko's transport thread + our loop thread
    conn.close()
    assert set(threading.enumerate()) - before == set()
    assert conn.state is TunnelState.CLOSED
    import socket

    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", local)) != 0
    with pytest.raises(Exception, match="closed"):
        conn.forward("127.0.0.1", echo.port)
