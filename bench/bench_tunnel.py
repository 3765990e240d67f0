"""Tunnel benchmark: zmq round trip and 100 MB throughput, direct vs our tunnel vs OpenSSH ``ssh -L``.

Run: ``python bench/bench_tunnel.py [--rounds 2000] [--megabytes 100] [--smoke]``. Starts a throwaway sshd on
127.0.0.1 (tests/real/sshd.py, needs openssh-server) and a zmq ROUTER echo server in a child process; the
DEALER and our tunnel run in this process, as they would in an ipcluster client. Prints one table.
The issue's targets: added round trip <= 2x what ``ssh -L`` adds; throughput >= 60% of ``ssh -L``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from real.sshd import SSHServer, free_port, sshd_missing_reason  # noqa: E402

from ipcluster.tunnel import SSHConnection  # noqa: E402


def echo_server(url: str) -> None:
    """ROUTER: ``echo`` frames come back as they are; ``bulk`` is counted; ``done`` answers the byte count."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.bind(url)
    received = 0
    while True:
        ident, kind, payload = router.recv_multipart(copy=False)
        kind = kind.bytes
        if kind == b"echo":
            router.send_multipart([ident, b"echo", payload], copy=False)
        elif kind == b"bulk":
            received += len(payload)
        elif kind == b"done":
            router.send_multipart([ident, b"done", str(received).encode()])
            received = 0
        elif kind == b"quit":
            router.send_multipart([ident, b"quit", b""])
            break
    router.close(0)
    ctx.term()


def measure(url: str, rounds: int, megabytes: int) -> tuple[float, float, float]:
    """(median round trip µs, p90 µs, throughput MB/s) for a DEALER connected to ``url``."""
    ctx = zmq.Context.instance()
    dealer = ctx.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.rcvtimeo = 30000
    dealer.connect(url)
    message = b"x" * 64
    for _ in range(50):
        dealer.send_multipart([b"echo", message])
        dealer.recv_multipart()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        dealer.send_multipart([b"echo", message])
        dealer.recv_multipart()
        samples.append((time.perf_counter() - start) * 1e6)
    chunk = b"\0" * (1 << 20)
    dealer.sndhwm = 0
    start = time.perf_counter()
    for _ in range(megabytes):
        dealer.send_multipart([b"bulk", chunk], copy=False)
    dealer.send_multipart([b"done", b""])
    _, count = dealer.recv_multipart()
    elapsed = time.perf_counter() - start
    assert int(count) == megabytes << 20, count
    dealer.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9)], megabytes * (1 << 20) / elapsed / 1e6


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--smoke", action="store_true", help="tiny run (CI): 50 rounds, 4 MB")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.megabytes = 50, 4
    reason = sshd_missing_reason()
    if reason:
        print(f"skipped: {reason}")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="bench-tunnel-"))
    sshd = SSHServer(workdir / "ssh").start()
    zport = free_port()
    server = multiprocessing.get_context("spawn").Process(
        target=echo_server, args=(f"tcp://127.0.0.1:{zport}",)
    )
    server.start()
    ssh_l = None
    conn = SSHConnection(
        sshd.server, keyfile=str(sshd.client_key), known_hosts=str(sshd.known_hosts), allow_agent=False
    )
    results = {}
    try:
        wait_port(zport)
        results["direct"] = measure(f"tcp://127.0.0.1:{zport}", args.rounds, args.megabytes)
        local = conn.forward("127.0.0.1", zport)
        results["ipcluster tunnel"] = measure(f"tcp://127.0.0.1:{local}", args.rounds, args.megabytes)
        lport = free_port()
        ssh_l = subprocess.Popen(
            sshd.ssh_command(
                "-N", "-o", "ExitOnForwardFailure=yes", "-L", f"127.0.0.1:{lport}:127.0.0.1:{zport}"
            ),
            stdin=subprocess.DEVNULL,
        )
        wait_port(lport)
        results["ssh -L"] = measure(f"tcp://127.0.0.1:{lport}", args.rounds, args.megabytes)
        cipher = conn.transport.remote_cipher
    finally:
        if ssh_l is not None:
            ssh_l.terminate()
            ssh_l.wait()
        conn.close()
        quitter = zmq.Context.instance().socket(zmq.DEALER)
        quitter.linger = 0
        quitter.rcvtimeo = 5000
        quitter.connect(f"tcp://127.0.0.1:{zport}")
        quitter.send_multipart([b"quit", b""])
        try:
            quitter.recv_multipart()
        except zmq.Again:
            server.terminate()
        quitter.close()
        server.join(10)
        sshd.stop()
    direct_rt = results["direct"][0]
    print(
        f"\n{args.rounds} round trips of 64 B (DEALER<->ROUTER echo), {args.megabytes} MB one way; cipher {cipher}"
    )
    print(f"{'path':<18} {'rt median µs':>13} {'rt p90 µs':>10} {'added µs':>9} {'MB/s':>8}")
    for name, (median, p90, mbps) in results.items():
        print(f"{name:<18} {median:>13.0f} {p90:>10.0f} {median - direct_rt:>9.0f} {mbps:>8.0f}")
    ours, openssh = results["ipcluster tunnel"], results["ssh -L"]
    added_ratio = (ours[0] - direct_rt) / max(openssh[0] - direct_rt, 1e-9)
    print(
        f"\nadded round trip vs ssh -L: {added_ratio:.2f}x (target <= 2x); throughput vs ssh -L:"
        f" {ours[2] / openssh[2]:.0%} (target >= 60%)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
