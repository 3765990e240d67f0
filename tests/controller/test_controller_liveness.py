"""Engine liveness: a closed heartbeat connection fails the engine at once (ROUTER_NOTIFY), a reconnect
within --disconnect-grace does not, and a busy cluster on a fast heartbeat sees no false failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import zmq
from cluster_helpers import read_stderr, stop_process, wait_for
from controller_peers import recv_msg

from ipcluster import wire
from ipcluster.profiles import url_for


@pytest.fixture
def real_engines(start_cluster):
    """``real_engines(*controller_args) -> (cluster, add_engine)``; engines are real processes."""
    procs: list[subprocess.Popen] = []
    made = {}

    def start(*args: str):
        cluster = start_cluster(*args)

        def add_engine() -> subprocess.Popen:
            log = open(cluster.profile_dir / "log" / f"engine{len(procs)}.log", "wb")
            proc = subprocess.Popen(
                [sys.executable, "-m", "ipcluster.engine", "--profile-dir", str(cluster.profile_dir)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
            log.close()
            procs.append(proc)
            return proc

        made["cluster"] = cluster
        return cluster, add_engine

    yield start
    for proc in procs:
        stop_process(proc)


def _engines(client, n: int) -> dict:
    return wait_for(
        lambda: (e := client.query("connection_request")["content"]["engines"]) and len(e) >= n and e,
        timeout=30,
        what=f"{n} engines",
    )


def _sleeper(seconds: float) -> float:
    """(Nested functions pickle by value: the engine cannot import this test module.)"""

    def sleeper(seconds: float) -> float:
        import time

        print("started", flush=True)
        time.sleep(seconds)
        return seconds

    return sleeper


def test_kill_9_engine_fails_its_task_well_within_one_heartbeat(real_engines):
    cluster, add_engine = real_engines("--ping", "5000")
    proc = add_engine()
    client = cluster.client()
    uuid = _engines(client, 1)["0"]
    client.session.send(
        client.mux,
        "apply_request",
        {},
        buffers=wire.pack_apply_message(_sleeper(60), (60,), {}),
        idents=[uuid.encode()],
    )
    # the task is running once its output reaches iopub
    wait_for(lambda: client.iopub.poll(100) and b"started" in b"".join(client.iopub.recv_multipart()), 20,
             what="the engine to start the task")  # fmt: skip
    killed = time.monotonic()
    os.kill(proc.pid, signal.SIGKILL)
    reply = client.recv("mux", timeout_ms=4000)  # a heartbeat failure would take 3 x 5 s
    elapsed = time.monotonic() - killed
    assert reply["content"]["ename"] == "EngineError", reply["content"]
    assert "connection closed" in reply["content"]["evalue"]
    assert elapsed < 2.5, f"EngineError took {elapsed:.2f} s with a 5 s heartbeat"
    note = wait_for(lambda: recv_msg(client.notification, client.session, 2000)[1], 10, what="notification")
    while note["msg_type"] != "unregistration_notification":
        note = recv_msg(client.notification, client.session, 2000)[1]
    assert note["content"]["id"] == 0
    log = read_stderr(cluster.proc)
    assert "malformed pong" not in log  # the empty notify frames are not bad input


class _Heart:
    """A heart made of two sockets that can hang up and come back under the same identity."""

    def __init__(self, info: dict, ident: bytes, session: wire.Session) -> None:
        self.ctx = zmq.Context()
        self.info, self.ident, self.session = info, ident, session
        self.sub = self.ctx.socket(zmq.SUB)
        self.sub.linger = 0
        self.sub.setsockopt(zmq.SUBSCRIBE, b"ping")
        self.sub.connect(url_for(info, "hb_ping"))
        self.pong: zmq.Socket | None = None
        self.connect()

    def connect(self) -> None:
        self.pong = self.ctx.socket(zmq.DEALER)
        self.pong.linger = 0
        self.pong.setsockopt(zmq.IDENTITY, self.ident)
        self.pong.connect(url_for(self.info, "hb_pong"))

    def hang_up(self) -> None:
        self.pong.close(0)

    def answer(self, timeout_ms: int = 5000) -> None:
        assert self.sub.poll(timeout_ms), "no ping"
        while True:
            try:
                _, nonce = self.sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.pong.send_multipart([nonce, self.session.signer.sign([nonce + self.ident])])

    def close(self) -> None:
        self.ctx.destroy(linger=0)


@pytest.mark.parametrize("grace, survives", [(0, False), (20_000, True)])
def test_disconnect_grace_lets_a_heart_that_reconnects_and_pongs_survive(start_cluster, grace, survives):
    cluster = start_cluster("--ping", "300", "--hb-misses", "100", "--disconnect-grace", str(grace))
    eng = cluster.engine(register=False, beat=False)
    eng.register()
    heart = _Heart(eng.info, eng.ident, eng.session)
    try:
        client = cluster.client()
        heart.answer()
        cluster.wait_registered(eng)
        heart.hang_up()
        heart.connect()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            heart.answer()
        engines = client.query("connection_request")["content"]["engines"]
        assert (str(eng.id) in engines) is survives, engines
    finally:
        heart.close()


def _noop():
    return lambda i: i


def test_fast_heartbeat_survives_a_10k_task_burst(real_engines):
    cluster, add_engine = real_engines("--ping", "100")
    add_engine()
    client = cluster.client()
    _engines(client, 1)
    fn_bufs = wire.pack_apply_message(_noop(), (0,), {})
    n = 10_000
    for _ in range(n):
        client.session.send(client.task, "apply_request", {}, buffers=fn_bufs)
    got = 0
    while got < n:
        reply = client.recv("task", timeout_ms=60_000)
        assert reply["content"]["status"] == "ok", reply["content"]
        got += 1
    log = read_stderr(cluster.proc)
    assert "unregistered" not in log, log[-2000:]
    assert "0" in client.query("connection_request")["content"]["engines"]
