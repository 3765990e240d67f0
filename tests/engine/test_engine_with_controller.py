"""End to end: real ipengine processes against a real ipcontroller, driven by a raw protocol client."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
import zmq

from ipcluster import wire
from ipcluster.profiles.connection import read_connection_file, url_for, write_connection_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cluster_helpers import read_stderr, start_controller, stop_process  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])


class RawClient:
    """A client speaking docs/protocol.md directly: query, mux, task, control DEALERs and an iopub SUB."""

    def __init__(self, client_file: Path) -> None:
        info = read_connection_file(client_file)
        self.session = wire.Session(info["key"], info["signature_scheme"])
        self.context = zmq.Context()
        self.sockets: dict[str, zmq.Socket] = {}
        for name in ("registration", "mux", "task", "control"):
            sock = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, self.session.bsession)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(url_for(info, name))
            self.sockets[name] = sock
        sub = self.context.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(url_for(info, "iopub"))
        self.sockets["iopub"] = sub

    def recv(self, name: str, timeout: float = 20) -> dict[str, Any]:
        sock = self.sockets[name]
        assert sock.poll(timeout * 1000), f"nothing on {name} within {timeout} s"
        _idents, rest = wire.feed_identities(sock.recv_multipart())
        return self.session.deserialize(rest)

    def engines(self) -> dict[str, str]:
        self.session.send(self.sockets["registration"], "connection_request", {})
        return self.recv("registration")["content"]["engines"]

    def wait_for_engines(self, n: int, timeout: float = 30) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            engines = self.engines()
            if len(engines) >= n:
                return engines
            assert time.monotonic() < deadline, f"{len(engines)} engines registered, expected {n}"
            time.sleep(0.05)

    def request(self, name: str, msg_type: str, content: dict, buffers=(), engine: str | None = None):
        idents = [engine.encode()] if engine else []
        return self.session.send(self.sockets[name], msg_type, content, buffers=buffers, idents=idents)

    def apply(self, name: str, f, *args, engine: str | None = None):
        return self.request(name, "apply_request", {}, wire.pack_apply_message(f, args, {}), engine)

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close(0)
        self.context.term()


@pytest.fixture
def controller(tmp_path):
    proc = start_controller(tmp_path / "profile_e2e", "--ping", "200")
    yield proc
    stop_process(proc)


@pytest.fixture
def client(controller):
    cl = RawClient(controller.client_file)
    yield cl
    cl.close()


def chatty(x):
    print("working on", x)
    return x * 10


def where():
    return os.getpid()


def test_apply_through_the_controller_with_output(controller, client, start_engine):
    eng = start_engine("--file", str(controller.engine_file))
    [(eid, uuid)] = client.wait_for_engines(1).items()
    req = client.apply("mux", chatty, 4, engine=uuid)
    reply = client.recv("mux")
    assert reply["parent_header"]["msg_id"] == req["msg_id"]
    assert wire.deserialize_object(reply["buffers"]) == 40
    assert reply["metadata"]["engine_id"] == int(eid)
    assert reply["metadata"]["iopub_count"] == 1
    stream = client.recv("iopub")
    assert stream["msg_type"] == "stream" and stream["content"]["text"] == "working on 4\n"
    assert stream["parent_header"]["msg_id"] == req["msg_id"]
    assert eng.proc.poll() is None


def test_load_balanced_tasks_reach_every_engine(controller, client, start_engine):
    engines = [start_engine("--file", str(controller.engine_file)) for _ in range(2)]
    client.wait_for_engines(2)
    for _ in range(8):
        client.apply("task", where)
    pids = {wire.deserialize_object(client.recv("task")["buffers"]) for _ in range(8)}
    assert pids == {e.proc.pid for e in engines}


def test_shutdown_through_the_controller_exits_0_and_unregisters(controller, client, start_engine):
    eng = start_engine("--file", str(controller.engine_file))
    [(_eid, uuid)] = client.wait_for_engines(1).items()
    client.request("control", "shutdown_request", {"restart": False}, engine=uuid)
    assert client.recv("control")["msg_type"] == "shutdown_reply"
    assert eng.wait() == 0
    deadline = time.monotonic() + 10
    while client.engines():
        assert time.monotonic() < deadline, "the controller still lists the engine"
        time.sleep(0.05)


def test_sigterm_exits_0_and_the_controller_forgets_the_engine(controller, client, start_engine):
    eng = start_engine("--file", str(controller.engine_file))
    client.wait_for_engines(1)
    eng.proc.send_signal(signal.SIGTERM)
    assert eng.wait() == 0
    deadline = time.monotonic() + 10
    while client.engines():
        assert time.monotonic() < deadline, "the controller still lists the engine"
        time.sleep(0.05)


def test_engine_exits_3_when_the_controller_stops(controller, client, start_engine):
    eng = start_engine("--file", str(controller.engine_file))
    client.wait_for_engines(1)
    stop_process(controller)
    assert eng.wait(15) == 3
    assert "stopped answering heartbeats" in eng.stderr


def test_wrong_key_is_refused_by_the_real_controller(controller, start_engine, tmp_path):
    info = json.loads(controller.engine_file.read_text())
    info["key"] = "0" * 64
    bad = write_connection_file(tmp_path / "wrong-key-engine.json", info)
    eng = start_engine("--file", str(bad))
    assert eng.wait() == 4, read_stderr(controller)
    assert "rejected this engine's signature" in eng.stderr and str(bad) in eng.stderr
