"""The far end of the raw-pyzmq baselines: a ROUTER that answers pings, swallows and returns big buffers.

Started by ``baseline.py`` as a separate process; prints its port on stdout, then serves until ``stop``.
Requests (one DEALER frame each, optionally followed by a payload):
``ping`` -> ``ping``; ``push[:scheme]`` + payload -> ``ack`` after receipt (and the keyed digest when a
scheme is named, as an authenticating receiver would); ``pull:<nbytes>`` -> payload of that size.
"""

from __future__ import annotations

import hashlib
import hmac
import sys

import zmq

KEY = b"bench-key"


def digest(scheme: str, buf) -> str:
    if scheme == "hmac-sha256":
        return hmac.digest(KEY, buf, "sha256").hex()
    if scheme == "blake3":
        import blake3

        return blake3.blake3(
            buf, key=hashlib.sha256(KEY).digest(), max_threads=blake3.blake3.AUTO
        ).hexdigest()
    return ""


def main() -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    print(port, flush=True)
    payload = b""
    while True:
        frames = sock.recv_multipart(copy=False)
        ident, req = frames[0].bytes, frames[1].bytes
        if req == b"ping":
            sock.send_multipart([ident, b"ping"])
        elif req.startswith(b"push"):
            scheme = req.partition(b":")[2].decode()
            d = digest(scheme, frames[2].buffer) if scheme else ""
            sock.send_multipart([ident, b"ack", d.encode()])
        elif req.startswith(b"pull:"):
            n = int(req.partition(b":")[2])
            if len(payload) != n:
                payload = bytes(n)
            sock.send_multipart([ident, payload], copy=False)
        elif req == b"stop":
            sock.send_multipart([ident, b"bye"])
            break
    sock.close(linger=0)
    ctx.term()


if __name__ == "__main__":
    sys.exit(main())
