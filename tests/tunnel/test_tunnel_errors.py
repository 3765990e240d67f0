"""Every failure is one line naming the host and the fix: host keys, keys, auth, reachability."""

from __future__ import annotations

import socket
import threading

import pytest
from conftest import connection_options
from real.sshd import keygen

from ipcluster.tunnel import (
    ChangedHostKey,
    SSHAuthError,
    SSHConfigError,
    SSHConnectError,
    SSHConnection,
    SSHError,
    SSHKeyFileError,
    UnknownHostKey,
    try_passwordless_ssh,
)


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    assert isinstance(exc.value, SSHError)
    return text


def test_unknown_host_key_is_refused_with_how_to_accept(connect, sshd, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    conn = connect(known_hosts=str(empty))
    with pytest.raises(UnknownHostKey) as exc:
        conn.open()
    text = one_line(exc)
    assert f"host key for {sshd.host} ([{sshd.host}]:{sshd.port}) is not in" in text
    assert "connect once with ssh, or pass --ssh-accept-new" in text
    assert empty.read_text() == ""


def test_accept_new_records_unknown_key_then_strict_accepts_it(connect, sshd, tmp_path):
    known = tmp_path / "sub" / "known_hosts"  # created with its directory
    conn = connect(known_hosts=str(known), host_key_policy="accept-new")
    assert conn.run("echo ok", timeout=10).stdout == "ok\n"
    line = known.read_text()
    assert line.startswith(f"[{sshd.host}]:{sshd.port} ssh-ed25519 ")
    assert line.split()[2] == sshd.host_key.with_suffix(".pub").read_text().split()[1]
    assert (known.stat().st_mode & 0o777) == 0o600
    strict = connect(known_hosts=str(known))
    assert strict.run("true", timeout=10).exit_status == 0


def test_changed_host_key_is_refused_even_with_accept_new(sshd_factory, connect):
    server = sshd_factory()
    old_known = server.known_hosts.read_text()
    server.new_host_key()
    server.restart()
    server.known_hosts.write_text(old_known)
    for policy in ("strict", "accept-new"):
        conn = connect(server, host_key_policy=policy)
        with pytest.raises(ChangedHostKey) as exc:
            conn.open()
        text = one_line(exc)
        assert "has changed" in text and f"ssh-keygen -R '[{server.host}]:{server.port}'" in text
    assert server.known_hosts.read_text() == old_known


def test_wrong_client_key_fails_authentication(connect, sshd, tmp_path):
    stranger = keygen(tmp_path / "id_stranger", "stranger")
    conn = connect(keyfile=str(stranger))
    with pytest.raises(SSHAuthError) as exc:
        conn.open()
    text = one_line(exc)
    assert f"authentication to {sshd.user}@{sshd.host} failed" in text
    assert "authorized_keys" in text and "id_stranger" in text


def test_missing_key_file_is_named(connect, tmp_path):
    conn = connect(keyfile=str(tmp_path / "nope"))
    with pytest.raises(SSHKeyFileError) as exc:
        conn.open()
    assert "nope for 127.0.0.1 does not exist; pass an existing key (--sshkey)" in one_line(exc)


def test_encrypted_key_needs_passphrase_when_not_interactive(sshd_factory, connect, tmp_path):
    server = sshd_factory(start=False)
    locked = keygen(tmp_path / "id_locked", "locked", passphrase="s3cret")
    server.authorized_keys.write_text(locked.with_suffix(".pub").read_text())
    server.start()
    with pytest.raises(SSHKeyFileError) as exc:
        connect(server, keyfile=str(locked)).open()
    assert "needs a passphrase" in one_line(exc)
    ok = connect(server, keyfile=str(locked), passphrase="s3cret")
    assert ok.run("echo yes", timeout=10).stdout == "yes\n"


def test_refused_port_is_a_clear_connect_error(connect, sshd):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conn = SSHConnection(f"{sshd.user}@127.0.0.1:{port}", **connection_options(sshd))
    with pytest.raises(SSHConnectError) as exc:
        conn.open()
    text = one_line(exc)
    assert f"cannot connect to 127.0.0.1 (127.0.0.1 port {port})" in text and "refused" in text.lower()
    conn.close()


def test_port_that_is_not_ssh_fails_the_handshake(sshd):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_garbage() -> None:
        client, _ = listener.accept()
        client.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        client.close()

    thread = threading.Thread(target=answer_garbage)
    thread.start()
    conn = SSHConnection(f"127.0.0.1:{port}", **connection_options(sshd, connect_timeout=3.0))
    with pytest.raises(SSHConnectError) as exc:
        conn.open()
    assert "SSH handshake with 127.0.0.1" in one_line(exc)
    thread.join(5)
    listener.close()
    conn.close()


def test_bad_server_string_and_policy_are_config_errors():
    with pytest.raises(SSHConfigError, match="cannot understand SSH server 'a b'"):
        SSHConnection("a b", ssh_config="/dev/null")
    with pytest.raises(SSHConfigError, match="SSH port 99999999 in 'user@host:99999999' is out of range"):
        SSHConnection("user@host:99999999", ssh_config="/dev/null")
    with pytest.raises(SSHConfigError, match="unknown host key policy 'yolo'"):
        SSHConnection("host", host_key_policy="yolo", ssh_config="/dev/null")


def test_try_passwordless_ssh(sshd, tmp_path):
    options = connection_options(sshd)
    assert try_passwordless_ssh(sshd.server, **options) is True
    stranger = keygen(tmp_path / "id_stranger", "stranger")
    options.update(keyfile=str(stranger), known_hosts=str(sshd.known_hosts))
    options["ssh_config"] = str(tmp_path / "cfg")
    (tmp_path / "cfg").write_text("")
    assert try_passwordless_ssh(sshd.server, **options) is False
