"""End to end with the real engine process (python -m ipcluster.engine) and a raw-protocol client."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from cluster_helpers import stop_process, wait_for
from controller_peers import recv_msg

from ipcluster import wire


@pytest.fixture
def engine_cluster(start_cluster):
    cluster = start_cluster()
    engines: list[subprocess.Popen] = []

    def add_engine() -> subprocess.Popen:
        log = open(cluster.profile_dir / "log" / f"engine{len(engines)}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "ipcluster.engine", "--profile-dir", str(cluster.profile_dir)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        engines.append(proc)
        return proc

    cluster.add_engine = add_engine
    yield cluster
    for proc in engines:
        stop_process(proc)


def _wait_engines(client, n):
    return wait_for(
        lambda: (e := client.query("connection_request")["content"]["engines"]) and len(e) >= n and e,
        timeout=30,
        what=f"{n} real engines",
    )


def test_real_engine_runs_direct_and_load_balanced_tasks(engine_cluster):
    engine_cluster.add_engine()
    engine_cluster.add_engine()
    client = engine_cluster.client()
    engines = _wait_engines(client, 2)
    uuid = engines["0"].encode("ascii")
    bufs = wire.pack_apply_message(lambda x: x * 2, (21,), {})
    client.session.send(client.mux, "apply_request", {}, buffers=bufs, idents=[uuid])
    reply = client.recv("mux")
    assert reply["content"]["status"] == "ok" and wire.deserialize_object(reply["buffers"]) == 42
    sent = [client.session.send(client.task, "apply_request", {}, buffers=bufs) for _ in range(6)]
    replies = [client.recv("task") for _ in sent]
    assert {r["parent_header"]["msg_id"] for r in replies} == {s["msg_id"] for s in sent}
    assert {r["metadata"]["engine_id"] for r in replies} == {0, 1}  # spread over both engines
    q = client.query("queue_request")["content"]
    assert q["0"]["completed"] + q["1"]["completed"] == 7


def test_real_engine_output_reaches_iopub_and_record(engine_cluster):
    engine_cluster.add_engine()
    client = engine_cluster.client()
    uuid = _wait_engines(client, 1)["0"].encode("ascii")
    req = client.session.send(
        client.mux, "execute_request", {"code": "print('hi there')", "silent": False}, idents=[uuid]
    )
    reply = client.recv("mux")
    assert reply["content"]["status"] == "ok"
    texts = []
    while client.iopub.poll(2000):
        _, msg = recv_msg(client.iopub, client.session)
        if msg["msg_type"] == "stream" and msg["parent_header"]["msg_id"] == req["msg_id"]:
            texts.append(msg["content"]["text"])
        if "".join(texts).strip() == "hi there":
            break
    assert "".join(texts).strip() == "hi there"
    rec = client.query("result_request", {"msg_ids": [req["msg_id"]]})["content"][req["msg_id"]]
    assert rec["stdout"].strip() == "hi there"


def test_killed_real_engine_fails_its_task_with_engine_error(engine_cluster):
    proc = engine_cluster.add_engine()
    client = engine_cluster.client()
    _wait_engines(client, 1)
    bufs = wire.pack_apply_message(lambda s: __import__("time").sleep(s), (60,), {})
    req = client.session.send(client.task, "apply_request", {}, buffers=bufs)
    wait_for(lambda: client.query("queue_request")["content"]["0"]["tasks"] == 1, what="task running")
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    reply = client.recv("task", timeout_ms=10_000)
    assert reply["parent_header"]["msg_id"] == req["msg_id"]
    assert reply["content"]["ename"] == "EngineError" and "engine 0" in reply["content"]["evalue"]
