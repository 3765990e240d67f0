"""The heart notices its own pong connection closing: the next ping calls on_gap, so an engine the
controller failed on that disconnect checks in and re-registers, even when the ping gap was short."""

from __future__ import annotations

import os
import threading
import time

import zmq

from ipcluster import wire
from ipcluster.engine.heart import Heart


def _ping_until_pong(pub: zmq.Socket, router: zmq.Socket, timeout: float = 10.0) -> list[bytes]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.send_multipart([b"ping", os.urandom(16)])
        if router.poll(50):
            return router.recv_multipart()
    raise AssertionError("the heart never answered")


def _rebind_router(ctx: zmq.Context, port: int, timeout: float = 10.0) -> zmq.Socket:
    """Bind a new ROUTER on the port a closed one used: zmq releases it asynchronously, so retry briefly."""
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    deadline = time.monotonic() + timeout
    while True:
        try:
            router.bind(f"tcp://127.0.0.1:{port}")
            return router
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                router.close(0)
                raise
            time.sleep(0.01)


def test_a_closed_pong_connection_makes_the_next_ping_a_gap():
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    router = ctx.socket(zmq.ROUTER)
    for s in (pub, router):
        s.linger = 0
    ping_port = pub.bind_to_random_port("tcp://127.0.0.1")
    pong_port = router.bind_to_random_port("tcp://127.0.0.1")
    gaps = threading.Event()
    heart = Heart(
        ctx,
        f"tcp://127.0.0.1:{ping_port}",
        f"tcp://127.0.0.1:{pong_port}",
        b"engine-uuid",
        wire.Session("key").signer,
        timeout_ms=30_000,
        on_controller_gone=lambda: None,
        gap_ms=30_000,  # pings never pause that long here: only the disconnect can call on_gap
        on_gap=gaps.set,
    )
    heart.start()
    try:
        assert _ping_until_pong(pub, router)[0] == b"engine-uuid"
        assert not gaps.is_set()
        router.close(0)  # the controller side of the connection goes away, then comes back
        router = _rebind_router(ctx, pong_port)
        _ping_until_pong(pub, router)
        deadline = time.monotonic() + 10
        while not gaps.wait(0.05) and time.monotonic() < deadline:  # pings go on, as the controller's do
            pub.send_multipart([b"ping", os.urandom(16)])
        assert gaps.is_set(), "no ping after the disconnect called on_gap"
        assert heart.disconnects >= 1
    finally:
        heart.stop()
        heart.join(5)
        router.close(0)
        pub.close(0)
        ctx.term()
