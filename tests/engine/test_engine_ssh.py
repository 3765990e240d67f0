"""--ssh: every engine connection, heartbeat included, goes through a real OpenSSH server."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from ipcluster import wire

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "real"))
from sshd import SSHServer, sshd_missing_reason  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.skipif(sshd_missing_reason() is not None, reason=str(sshd_missing_reason()))


def add(a, b):
    return a + b


@pytest.fixture
def sshd(tmp_path):
    server = SSHServer(tmp_path / "sshd").start()
    yield server
    server.stop()


@pytest.fixture
def ssh_home(tmp_path, sshd):
    """A HOME whose ~/.ssh/known_hosts trusts the test server, so the real ~/.ssh is never touched."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    shutil.copy(sshd.known_hosts, home / ".ssh" / "known_hosts")
    return {"HOME": str(home)}


def test_engine_tunnels_every_connection_through_ssh(fake_controller, start_engine, sshd, ssh_home):
    eng = start_engine(
        "--file",
        str(fake_controller.file),
        "--ssh",
        sshd.server,
        "--sshkey",
        str(sshd.client_key),
        env=ssh_home,
    )
    fake_controller.accept_registration(engine_id=2)
    fake_controller.wait_for_pong()
    fake_controller.apply(add, 1, 2)
    assert wire.deserialize_object(fake_controller.reply()["buffers"]) == 3
    assert f"tunnelling every engine connection through {sshd.server}" in eng.stderr
    # With the SSH server gone, the pings (which the fake controller still sends) cannot reach the heart.
    sshd.stop()
    stopped = time.monotonic()
    assert eng.wait(30) == 3
    assert time.monotonic() - stopped < 20


def test_unknown_host_key_is_a_one_line_error(fake_controller, start_engine, sshd, tmp_path):
    home = tmp_path / "empty-home"
    (home / ".ssh").mkdir(parents=True)
    eng = start_engine(
        "--file",
        str(fake_controller.file),
        "--ssh",
        sshd.server,
        "--sshkey",
        str(sshd.client_key),
        env={"HOME": str(home)},
    )
    assert eng.wait(30) == 1
    [error] = [line for line in eng.stderr.splitlines() if line.startswith("ipengine: error:")]
    assert "host key" in error and "--ssh-accept-new" in error


def test_ssh_accept_new_records_the_host_key(fake_controller, start_engine, sshd, tmp_path):
    home = tmp_path / "new-home"
    (home / ".ssh").mkdir(parents=True)
    eng = start_engine(
        "--file",
        str(fake_controller.file),
        "--ssh",
        sshd.server,
        "--sshkey",
        str(sshd.client_key),
        "--ssh-accept-new",
        env={"HOME": str(home)},
    )
    fake_controller.accept_registration()
    fake_controller.wait_for_pong()
    assert eng.proc.poll() is None
    assert sshd.known_hosts_name in (home / ".ssh" / "known_hosts").read_text()
