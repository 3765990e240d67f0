"""ipengine start-up: finding and checking the connection file, and every way registration can end."""

from __future__ import annotations

import json
import os

from click.testing import CliRunner

from ipcluster import wire
from ipcluster.engine.app import ipengine
from ipcluster.profiles.connection import write_connection_file
from ipcluster.profiles.dirs import ProfileDir


def test_missing_connection_file_exits_2_with_the_fix(tmp_path, start_engine):
    eng = start_engine("--file", str(tmp_path / "nope.json"))
    assert eng.wait() == 2
    err = eng.stderr.strip()
    assert err.count("\n") == 0, err
    assert "nope.json does not exist" in err and "ipcluster start" in err


def test_connection_file_that_is_not_json_exits_2(tmp_path, start_engine):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    os.chmod(path, 0o600)
    eng = start_engine("--file", str(path))
    assert eng.wait() == 2
    assert "not valid JSON" in eng.stderr


def test_client_connection_file_is_refused_with_exit_2(tmp_path, start_engine):
    path = write_connection_file(
        tmp_path / "ipcontroller-client.json",
        {
            "key": "k",
            "signature_scheme": "hmac-sha256",
            "transport": "tcp",
            "interface": "127.0.0.1",
            "registration": 1,
            "mux": 2,
            "task": 3,
            "control": 4,
            "iopub": 5,
            "notification": 6,
        },
    )
    eng = start_engine("--file", str(path))
    assert eng.wait() == 2
    assert "lacks hb_ping, hb_pong" in eng.stderr and "ipcontroller-engine.json" in eng.stderr


def test_world_readable_connection_file_exits_2(fake_controller, start_engine):
    os.chmod(fake_controller.file, 0o644)
    eng = start_engine("--file", str(fake_controller.file))
    assert eng.wait() == 2
    assert "chmod 600" in eng.stderr


def test_profile_dir_and_cluster_id_locate_the_file(tmp_path, fake_controller, start_engine):
    prof = ProfileDir(tmp_path / "profile_x").ensure()
    target = prof.connection_file("engine", "c7")
    target.write_text(fake_controller.file.read_text())
    os.chmod(target, 0o600)
    eng = start_engine("--profile-dir", str(prof.path), "--cluster-id", "c7")
    fake_controller.accept_registration(engine_id=3)
    fake_controller.wait_for_pong()
    assert eng.proc.poll() is None


def test_registration_timeout_exits_4_naming_the_controller(tmp_path, fake_controller, start_engine):
    eng = start_engine("--file", str(fake_controller.file), "--timeout", "0.5")
    assert eng.wait() == 4
    url = f"tcp://127.0.0.1:{fake_controller.ports['registration']}"
    assert f"controller at {url} did not answer registration within 0.5 s" in eng.stderr
    assert "ipcluster list" in eng.stderr


def test_refused_registration_exits_4_with_the_reason(fake_controller, start_engine):
    eng = start_engine("--file", str(fake_controller.file))
    idents, msg = fake_controller.recv("registration")
    fake_controller.session.send(
        fake_controller.sockets["registration"],
        "registration_reply",
        {"status": "error", "ename": "KeyError", "evalue": "uuid already registered"},
        parent=msg["header"],
        idents=idents,
    )
    assert eng.wait() == 4
    assert "refused registration: KeyError: uuid already registered" in eng.stderr


def test_wrong_key_exits_4_telling_which_file_to_copy(fake_controller, start_engine):
    eng = start_engine("--file", str(fake_controller.file))
    sock = fake_controller.sockets["registration"]
    assert sock.poll(20000)
    frames = sock.recv_multipart()
    idents, _rest = wire.feed_identities(frames)
    sock.send_multipart(fake_controller.session.auth_error_frames(idents, "bad signature"))
    assert eng.wait() == 4
    err = eng.stderr
    assert "rejected this engine's signature" in err
    assert str(fake_controller.file) in err and "ipcontroller-engine.json" in err


def test_bad_messages_during_registration_are_ignored(fake_controller, start_engine):
    eng = start_engine("--file", str(fake_controller.file), "--timeout", "20")
    sock = fake_controller.sockets["registration"]
    assert sock.poll(20000)
    idents, rest = wire.feed_identities(sock.recv_multipart())
    msg = fake_controller.session.deserialize(rest)
    forged = wire.Session("another key")
    forged.send(sock, "registration_reply", {"status": "ok", "id": 9}, parent=msg["header"], idents=idents)
    sock.send_multipart([*idents, b"garbage"])
    fake_controller.session.send(
        sock,
        "registration_reply",
        {"status": "ok", "id": 1, "hb_period": 200, "hb_misses": 5},
        parent=msg["header"],
        idents=idents,
    )
    fake_controller.engine_uuid = idents[0]
    fake_controller.start_pinging()
    fake_controller.wait_for_pong()
    assert eng.proc.poll() is None
    assert "dropped a bad message on the registration socket" in eng.stderr


def test_registers_with_uuid_identity_on_every_socket(fake_controller, engine):
    uuid = fake_controller.engine_uuid
    assert len(uuid) == 32 and int(uuid, 16) >= 0
    ident, _nonce, ok, _t = fake_controller.pongs[-1]
    assert ident == uuid and ok
    fake_controller.send("control", "clear_request")
    idents, reply = fake_controller.recv("control")
    assert idents[0] == uuid and reply["msg_type"] == "clear_reply"


def test_help_documents_options_and_exit_statuses():
    result = CliRunner().invoke(ipengine, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--profile",
        "--profile-dir",
        "--cluster-id",
        "--file",
        "--timeout",
        "--ssh",
        "--sshkey",
        "--location",
        "--hb-grace",
        "--log-level",
        "--log-file",
    ):
        assert option in result.output
    for status in ("0  shut down", "2  the connection file", "3  the controller stopped", "4  registration"):
        assert status in result.output


def test_unknown_profile_exits_2(start_engine):
    eng = start_engine("--profile", "no-such-profile")
    assert eng.wait() == 2
    assert "no profile 'no-such-profile'" in eng.stderr


def test_location_overrides_the_controller_address(tmp_path, fake_controller, start_engine):
    info = json.loads(fake_controller.file.read_text())
    info["interface"] = info["location"] = "192.0.2.1"  # TEST-NET-1: never reachable
    moved = write_connection_file(tmp_path / "moved-engine.json", info)
    eng = start_engine("--file", str(moved), "--location", "127.0.0.1")
    fake_controller.accept_registration()
    fake_controller.wait_for_pong()
    assert eng.proc.poll() is None
