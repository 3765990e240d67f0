"""A load generator that impersonates many engines against one real controller (docs/protocol.md §4-5).

Each impersonated engine only registers (``registration_request`` on its own DEALER, identity = its uuid)
and answers heartbeats (``[nonce, mac]`` on its own heart DEALER, ``mac = keyed hash(nonce + uuid)``); one
SUB per process hears the pings for all of them. Run several processes of a few hundred engines each.

    python bench/fake_engines.py --file ipcontroller-engine.json --count 1250 [--max-seconds 600]

Prints ``ready`` once its sockets are connected, waits for a line ``go`` on stdin, registers every
engine, prints ``registered <ok> <failed> <seconds>``, then answers pings until stdin closes, it reads
``stop``, or ``--max-seconds`` pass (so it always ends by itself). Prints ``pongs <n>`` before exiting.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
import uuid
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ipcluster.wire import Session  # noqa: E402


def url(info: dict, port_key: str) -> str:
    host = info.get("interface") or "127.0.0.1"
    if host in ("0.0.0.0", "*"):
        host = info.get("location") or "127.0.0.1"
    return f"{info.get('transport', 'tcp')}://{host}:{info[port_key]}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True, help="the controller's engine connection file")
    ap.add_argument("--count", type=int, required=True, help="engines this process impersonates")
    ap.add_argument("--max-seconds", type=float, default=600.0)
    args = ap.parse_args()
    info = json.loads(Path(args.file).read_text())
    session = Session(key=info.get("key", ""), signature_scheme=info.get("signature_scheme", "hmac-sha256"))
    ctx = zmq.Context(io_threads=1)
    ctx.MAX_SOCKETS = 2 * args.count + 64
    idents = [uuid.uuid4().hex.encode("ascii") for _ in range(args.count)]
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(url(info, "hb_ping"))
    hearts, regs = [], []
    for ident in idents:
        h = ctx.socket(zmq.DEALER)
        h.setsockopt(zmq.IDENTITY, ident)
        h.setsockopt(zmq.LINGER, 0)
        h.connect(url(info, "hb_pong"))
        hearts.append(h)
        r = ctx.socket(zmq.DEALER)
        r.setsockopt(zmq.IDENTITY, ident)
        r.setsockopt(zmq.LINGER, 0)
        r.connect(url(info, "registration"))
        regs.append(r)
    print("ready", flush=True)
    deadline = time.monotonic() + args.max_seconds
    line = sys.stdin.readline().strip()
    if line != "go":
        return 0
    t0 = time.perf_counter()
    for ident, r in zip(idents, regs, strict=True):
        session.send(r, "registration_request", {"uuid": ident.decode(), "id": None})
    poller = zmq.Poller()
    for r in regs:
        poller.register(r, zmq.POLLIN)
    poller.register(sub, zmq.POLLIN)
    pending = {r: ident for r, ident in zip(regs, idents, strict=True)}
    ok = failed = pongs = 0
    beating = list(zip(hearts, idents, strict=True))

    def answer_pings() -> int:
        """Answer the newest queued ping for every engine (a late, older nonce would only be stale)."""
        nonce = None
        while True:
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) == 2 and frames[0] == b"ping":
                nonce = frames[1]
        if nonce is None:
            return 0
        for h, ident in beating:
            h.send_multipart([nonce, session.signer.sign([nonce + ident])])
        return len(beating)

    while pending and time.monotonic() < deadline:
        for sock, _ in poller.poll(1000):
            if sock is sub:
                pongs += answer_pings()
                continue
            _idents, msg = session.recv(sock)
            if msg is None:
                continue
            if msg["content"].get("status") == "ok":
                ok += 1
            else:
                failed += 1
            poller.unregister(sock)
            pending.pop(sock, None)
            sock.close(linger=0)
    print(f"registered {ok} {failed} {time.perf_counter() - t0:.4f}", flush=True)
    # answer pings until told to stop (stdin) or the time limit
    p2 = zmq.Poller()
    p2.register(sub, zmq.POLLIN)
    stdin_fd = sys.stdin.fileno()
    while time.monotonic() < deadline:
        if dict(p2.poll(200)).get(sub):
            pongs += answer_pings()
        ready, _, _ = select.select([stdin_fd], [], [], 0)
        if ready:
            data = os.read(stdin_fd, 1024)
            if not data or b"stop" in data:
                break
    print(f"pongs {pongs}", flush=True)
    for s in hearts + [sub]:
        s.close(linger=0)
    for r in pending:
        r.close(linger=0)
    ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
