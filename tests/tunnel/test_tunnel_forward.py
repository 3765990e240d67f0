"""Forwards over a real sshd: zmq through the tunnel, many forwards on one transport, flow control, run/put/get."""

from __future__ import annotations

import os
import socket
import stat
import threading

import pytest
import zmq
from conftest import EchoServer, connection_options

from ipcluster.tunnel import (
    SSHTimeout,
    TunnelState,
    get_connection,
    open_tunnels,
    tunnel_connection,
    tunnel_url,
)


def roundtrip(ctx: zmq.Context, url: str, payload: bytes = b"ping", timeout_ms: int = 5000) -> bytes:
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.rcvtimeo = timeout_ms
    dealer.connect(url)
    try:
        dealer.send(payload)
        return dealer.recv()
    finally:
        dealer.close()


def accepted_logins(sshd) -> int:
    return sshd.log.read_text(errors="replace").count("Accepted publickey")


def test_forward_carries_zmq_between_dealer_and_router(connect, echo, zctx):
    conn = connect()
    local_port = conn.forward("127.0.0.1", echo.port)
    assert conn.state is TunnelState.UP
    assert local_port != echo.port
    assert roundtrip(zctx, f"tcp://127.0.0.1:{local_port}") == b"ping"
    assert conn.forwards == {local_port: ("127.0.0.1", echo.port)}


def test_zmq_req_rep_through_tunnel_connection(sshd, zctx):
    rep = zctx.socket(zmq.REP)
    rep.linger = 0
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    req = zctx.socket(zmq.REQ)
    req.linger = 0
    req.rcvtimeo = 5000
    local = tunnel_connection(req, f"tcp://127.0.0.1:{port}", sshd.server, **connection_options(sshd))
    assert local.startswith("tcp://127.0.0.1:")
    req.send(b"hello")
    assert rep.poll(5000)
    rep.send(b"pong:" + rep.recv())
    assert req.recv() == b"pong:hello"
    req.close()
    rep.close()


def test_many_forwards_share_one_transport(sshd, zctx):
    servers = [EchoServer(zctx) for _ in range(4)]
    try:
        logins = accepted_logins(sshd)
        urls = open_tunnels([s.url for s in servers], sshd.server, **connection_options(sshd))
        again = tunnel_url(servers[0].url, sshd.server, **connection_options(sshd))
        conn = get_connection(sshd.server, **connection_options(sshd))
        assert again == urls[0]
        assert len(set(urls)) == 4
        assert len(conn.forwards) == 4
        for index, url in enumerate(urls):
            assert roundtrip(zctx, url, b"%d" % index) == b"%d" % index
        assert accepted_logins(sshd) == logins + 1  # one SSH login carried all four
    finally:
        for server in servers:
            server.close()


def test_wildcard_bind_address_means_server_loopback(connect, echo, zctx):
    conn = connect()
    url = tunnel_url(f"tcp://*:{echo.port}", conn.server, **connection_options_for(conn))
    assert roundtrip(zctx, url) == b"ping"


def connection_options_for(conn):
    # the registry is keyed by ssh_config and known_hosts too: reuse this test's own files
    return dict(
        keyfile=list(conn.credentials.keyfiles),
        known_hosts=list(conn.target.known_hosts_files),
        ssh_config=conn._ssh_config,
        allow_agent=False,
        interactive=False,
    )


def test_large_messages_and_concurrent_streams_arrive_intact(connect, echo, zctx):
    conn = connect()
    url = f"tcp://127.0.0.1:{conn.forward('127.0.0.1', echo.port)}"
    big = os.urandom(8 << 20)  # larger than the SSH window: exercises flow control both ways
    assert roundtrip(zctx, url, big, timeout_ms=30000) == big
    results: list[bool] = []

    def client(index: int) -> None:
        payload = bytes([index]) * (64 << 10)
        results.append(all(roundtrip(zctx, url, payload, 20000) == payload for _ in range(5)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == [True] * 8


def test_forward_to_closed_remote_port_refuses_only_that_stream(connect, echo, zctx):
    conn = connect()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    local = conn.forward("127.0.0.1", dead_port)
    with socket.create_connection(("127.0.0.1", local), timeout=5) as sock:
        sock.settimeout(5)
        assert sock.recv(10) == b""  # the server could not connect: our end is closed
    assert conn.state is TunnelState.UP
    assert roundtrip(zctx, f"tcp://127.0.0.1:{conn.forward('127.0.0.1', echo.port)}") == b"ping"


def test_unforward_closes_the_listener(connect, echo):
    conn = connect()
    local = conn.forward("127.0.0.1", echo.port)
    conn.unforward(local)
    assert conn.forwards == {}

    def refused() -> bool:
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", local)) != 0

    from real.sshd import wait_until

    wait_until(refused, 5, what="listener closed")


def test_run_returns_exit_status_stdout_and_stderr(connect):
    conn = connect()
    status, out, err = conn.run("echo out; echo err >&2; exit 3", timeout=10)
    assert (status, out, err) == (3, "out\n", "err\n")
    assert conn.run("cat", timeout=10, stdin="fed\n").stdout == "fed\n"


def test_run_timeout_raises(connect):
    conn = connect()
    with pytest.raises(SSHTimeout, match="did not finish in 0.3 s"):
        conn.run("sleep 5", timeout=0.3)
    assert conn.run("true", timeout=10).exit_status == 0


def test_put_and_get_copy_files_with_private_mode(connect, tmp_path):
    conn = connect()
    source = tmp_path / "secret.json"
    source.write_bytes(b'{"key": "abc"}' * 10000)
    remote = str(tmp_path / "remote" / "copy.json")
    os.mkdir(tmp_path / "remote")
    conn.put(source, remote)
    assert stat.S_IMODE(os.stat(remote).st_mode) == 0o600
    assert open(remote, "rb").read() == source.read_bytes()
    back = tmp_path / "back.json"
    conn.get(remote, back)
    assert back.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(os.stat(back).st_mode) == 0o600


def test_context_manager_opens_lazily_and_closes(sshd):
    from ipcluster.tunnel import SSHConnection

    conn = SSHConnection(sshd.server, **connection_options(sshd))
    assert conn.state is TunnelState.NEW  # nothing happens until first use
    with conn:
        assert conn.state is TunnelState.UP
        assert conn.run("echo hi", timeout=10).stdout == "hi\n"
    assert conn.state is TunnelState.CLOSED
