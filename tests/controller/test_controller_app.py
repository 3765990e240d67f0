"""The ipcontroller command line: options, connection files, exit codes, signals, reuse, DB backends."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys

import pytest
from cluster_helpers import read_stderr, start_controller, stop_process

from ipcluster.controller.app import command


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ipcluster.controller", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_every_option():
    out = _run("--help").stdout
    for opt in command.params:
        for name in opt.opts:
            assert name in out, name
    for name in ("--profile", "--profile-dir", "--cluster-id", "--ip", "--transport", "--port", "--ports"):
        assert name in out
    for name in (
        "--location",
        "--ssh",
        "--enginessh",
        "--ping",
        "--hb-misses",
        "--scheme",
        "--hwm",
        "--reuse",
    ):
        assert name in out
    for name in ("--no-secure", "--signature-scheme", "--db", "--dictdb", "--sqlitedb", "--log-level"):
        assert name in out


@pytest.mark.parametrize(
    "args,needle",
    [(["--scheme", "bogus"], "--scheme"), (["--ports", "9-1"], "--ports"), (["--hwm", "-1"], "--hwm")],
)
def test_bad_option_is_a_usage_error(tmp_path, args, needle):
    res = _run("--profile-dir", str(tmp_path), *args)
    assert res.returncode == 2 and needle in res.stderr


def test_port_in_use_is_one_line_error(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        res = _run("--profile-dir", str(tmp_path), "--port", str(port))
    finally:
        taken.close()
    assert res.returncode == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and str(port) in errors[0] and "--port" in errors[0]
    assert "Traceback" not in res.stderr


def test_sigterm_exits_zero_and_removes_files(tmp_path):
    proc = start_controller(tmp_path)
    assert "ipcontroller ready: " + str(proc.client_file) in read_stderr(proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not proc.client_file.exists() and not proc.engine_file.exists()


def test_sigint_exits_zero(tmp_path):
    proc = start_controller(tmp_path)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0


def test_reuse_keeps_key_and_ports_across_restarts(tmp_path):
    proc = start_controller(tmp_path, "--reuse")
    first = json.loads(proc.client_file.read_text())
    first_engine = json.loads(proc.engine_file.read_text())
    assert stop_process(proc) == 0
    assert proc.client_file.exists()  # kept for the next run
    proc = start_controller(tmp_path, "--reuse")
    try:
        second = json.loads(proc.client_file.read_text())
        second_engine = json.loads(proc.engine_file.read_text())
        assert second["key"] == first["key"]
        for name in ("registration", "mux", "task", "control", "iopub", "notification"):
            assert second[name] == first[name]
        for name in ("hb_ping", "hb_pong", "mux"):
            assert second_engine[name] == first_engine[name]
    finally:
        stop_process(proc)


def test_cluster_id_and_port_range_and_fixed_port(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    lo = 42000 + (free % 1000) * 20
    proc = start_controller(
        tmp_path,
        "--cluster-id",
        "abc",
        "--ports",
        f"{lo}-{lo + 19}",
        "--ssh",
        "me@gw",
        "--enginessh",
        "me@login",
    )
    try:
        assert proc.client_file.name == "ipcontroller-abc-client.json"
        info = json.loads(proc.client_file.read_text())
        engine = json.loads(proc.engine_file.read_text())
        ports = [info[k] for k in ("registration", "mux", "task", "control", "iopub", "notification")]
        ports += [engine[k] for k in ("mux", "task", "control", "iopub", "hb_ping", "hb_pong")]
        assert all(lo <= p <= lo + 19 for p in ports) and len(set(ports)) == 12
        assert info["cluster_id"] == "abc"
        assert info["ssh"] == "me@gw" and engine["ssh"] == "me@login"
    finally:
        stop_process(proc)


def test_ports_range_too_small_fails(tmp_path):
    res = _run("--profile-dir", str(tmp_path), "--ports", "42990-42993")
    assert res.returncode == 1 and "--ports" in res.stderr


def test_blake3_scheme_end_to_end(start_cluster):
    pytest.importorskip("blake3")
    cluster = start_cluster("--signature-scheme", "blake3")
    assert json.loads(cluster.proc.client_file.read_text())["signature_scheme"] == "blake3"
    eng = cluster.engine()
    client = cluster.client()
    req = client.apply("mux", eng.uuid)
    idents, got = eng.recv("mux")
    eng.reply("mux", idents, got)
    assert client.recv("mux")["parent_header"]["msg_id"] == req["msg_id"]


def test_sqlite_db_persists_records(start_cluster, tmp_path):
    db_path = tmp_path / "records.db"
    cluster = start_cluster("--sqlitedb", "--db-path", str(db_path))
    eng = cluster.engine()
    client = cluster.client()
    req = client.apply("mux", eng.uuid)
    idents, got = eng.recv("mux")
    eng.reply("mux", idents, got, buffers=[b"res"])
    client.recv("mux")
    reply = client.query("result_request", {"msg_ids": [req["msg_id"]]})
    assert [bytes(b) for b in reply["buffers"]] == [b"res"]
    recs = client.query("db_request", {"query": {"completed": {"$ne": None}}, "keys": ["msg_id"]})
    assert [r["msg_id"] for r in recs["content"]["records"]] == [req["msg_id"]]
    assert stop_process(cluster.proc) == 0
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT msg_id FROM tasks").fetchall() == [(req["msg_id"],)]


def test_ipc_transport_round_trip(start_cluster):
    cluster = start_cluster("--transport", "ipc", "--cluster-id", "ipct")
    info = json.loads(cluster.proc.client_file.read_text())
    assert info["transport"] == "ipc" and info["mux"].endswith("ipcontroller-ipct-mux-client.ipc")
    eng = cluster.engine()
    client = cluster.client()
    req = client.apply("mux", eng.uuid)
    idents, got = eng.recv("mux")
    eng.reply("mux", idents, got)
    assert client.recv("mux")["parent_header"]["msg_id"] == req["msg_id"]


def test_wildcard_ip_writes_location(start_cluster):
    cluster = start_cluster("--ip", "0.0.0.0", "--location", "127.0.0.1")
    info = json.loads(cluster.proc.client_file.read_text())
    assert info["interface"] == "0.0.0.0" and info["location"] == "127.0.0.1"
    assert info["url"] == f"tcp://127.0.0.1:{info['registration']}"
    eng = cluster.engine()
    assert eng.id == 0


def test_sigterm_publishes_shutdown_notification(cluster):
    from cluster_helpers import wait_for
    from controller_peers import recv_msg

    client = cluster.client()
    wait_for(lambda: client.query("connection_request"), what="client connected")
    cluster.proc.send_signal(signal.SIGTERM)
    _, note = recv_msg(client.notification, client.session)
    assert note["msg_type"] == "shutdown_notification"
    assert cluster.proc.wait(10) == 0
