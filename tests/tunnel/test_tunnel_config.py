"""Server names, ssh_config aliases (HostName, Port, User, IdentityFile, UserKnownHostsFile, ProxyJump), URLs."""

from __future__ import annotations

import getpass

import pytest
from conftest import connection_options
from test_tunnel_forward import roundtrip

from ipcluster.tunnel import SSHConfigError, SSHConnection, parse_server, parse_tcp_url, resolve_target


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ("node1", (None, "node1", None)),
        ("alice@node1", ("alice", "node1", None)),
        ("alice@node1:2200", ("alice", "node1", 2200)),
        ("10.0.0.5:22", (None, "10.0.0.5", 22)),
        ("bob@[::1]:2222", ("bob", "::1", 2222)),
        ("ssh://carol@host:23", ("carol", "host", 23)),
    ],
)
def test_parse_server_forms(server, expected):
    assert parse_server(server) == expected


@pytest.mark.parametrize("bad", ["", "a b", "host:port", "user@", "host:0"])
def test_parse_server_rejects_garbage(bad):
    with pytest.raises(SSHConfigError):
        parse_server(bad)


def test_parse_tcp_url():
    assert parse_tcp_url("tcp://10.1.2.3:5555") == ("10.1.2.3", 5555)
    assert parse_tcp_url("tcp://*:5555") == ("127.0.0.1", 5555)
    assert parse_tcp_url("tcp://0.0.0.0:1") == ("127.0.0.1", 1)
    assert parse_tcp_url("tcp://[fe80::1]:7") == ("fe80::1", 7)
    with pytest.raises(SSHConfigError, match="only tcp://host:port"):
        parse_tcp_url("ipc:///tmp/sock")


def test_resolve_target_applies_config_and_explicit_parts_win(tmp_path):
    config = tmp_path / "config"
    config.write_text(
        "Host node1\n  HostName 10.9.9.9\n  Port 2200\n  User alice\n  IdentityFile ~/keys/id_x\n"
        "  UserKnownHostsFile /tmp/kh1 /tmp/kh2\n  ProxyJump gateway\n  ConnectTimeout 7\n"
    )
    target = resolve_target("node1", config)
    assert (target.hostname, target.port, target.user) == ("10.9.9.9", 2200, "alice")
    assert target.identity_files[0].endswith("/keys/id_x")
    assert target.known_hosts_files == ("/tmp/kh1", "/tmp/kh2")
    assert target.known_hosts_name == "[10.9.9.9]:2200"
    assert (target.proxy_jump, target.connect_timeout) == ("gateway", 7.0)
    explicit = resolve_target("bob@node1:22", config, known_hosts="/tmp/mine")
    assert (explicit.user, explicit.port, explicit.known_hosts_files) == ("bob", 22, ("/tmp/mine",))
    assert explicit.known_hosts_name == "10.9.9.9"
    plain = resolve_target("other", config)
    assert (plain.hostname, plain.port, plain.user) == ("other", 22, getpass.getuser())


def alias_config(tmp_path, server, alias="node1", extra=""):
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host {alias}\n  HostName {server.host}\n  Port {server.port}\n  User {server.user}\n"
        f"  IdentityFile {server.client_key}\n  UserKnownHostsFile {server.known_hosts}\n{extra}"
    )
    return config


def test_ssh_config_alias_is_honoured_end_to_end(sshd, tmp_path, echo, zctx):
    config = alias_config(tmp_path, sshd)
    with SSHConnection("node1", ssh_config=config, allow_agent=False, interactive=False) as conn:
        assert conn.target.port == sshd.port
        assert conn.run("echo via alias", timeout=10).stdout == "via alias\n"
        assert roundtrip(zctx, f"tcp://127.0.0.1:{conn.forward('127.0.0.1', echo.port)}") == b"ping"


def test_ssh_config_strict_host_key_checking_accept_new(sshd, tmp_path):
    config = alias_config(tmp_path, sshd, extra="  StrictHostKeyChecking accept-new\n")
    known = tmp_path / "fresh_known_hosts"
    with SSHConnection("node1", ssh_config=config, known_hosts=known, allow_agent=False) as conn:
        assert conn.host_key_policy == "accept-new"
        assert conn.run("true", timeout=10).exit_status == 0
    assert known.read_text().startswith(f"[{sshd.host}]:{sshd.port} ")


def test_proxy_jump_reaches_a_server_through_another(sshd_factory, tmp_path, echo, zctx):
    jump, inner = sshd_factory(), sshd_factory()
    # both servers accept the jump server's key; the inner one is reached only as a channel through the jump
    inner.authorized_keys.write_text(jump.client_key.with_suffix(".pub").read_text())
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host gateway\n  HostName {jump.host}\n  Port {jump.port}\n  User {jump.user}\n"
        f"  UserKnownHostsFile {jump.known_hosts}\n"
        f"Host inner\n  HostName {inner.host}\n  Port {inner.port}\n  User {inner.user}\n"
        f"  UserKnownHostsFile {inner.known_hosts}\n  ProxyJump gateway\n"
    )
    jump_logins = jump.log.read_text().count("Accepted publickey")
    with SSHConnection(
        "inner", ssh_config=config, keyfile=jump.client_key, allow_agent=False, interactive=False
    ) as conn:
        assert conn.run("echo inner", timeout=10).stdout == "inner\n"
        assert roundtrip(zctx, f"tcp://127.0.0.1:{conn.forward('127.0.0.1', echo.port)}") == b"ping"
    assert jump.log.read_text().count("Accepted publickey") == jump_logins + 1
    assert "Connection from" in inner.log.read_text()


def test_unreadable_ssh_config_is_a_config_error(tmp_path):
    with pytest.raises(SSHConfigError, match="cannot read ssh_config"):
        SSHConnection("node1", ssh_config=tmp_path / "missing")


def test_registry_options(sshd):
    from ipcluster.tunnel import get_connection

    options = connection_options(sshd)
    first = get_connection(sshd.server, **options)
    assert get_connection(sshd.server, **options) is first
    first.close()
    assert get_connection(sshd.server, **options) is not first
