"""Two hosts as network namespaces: a controller-like zmq ROUTER bound to 127.0.0.1 in A is reachable from B
only through the tunnel (sshd runs in A; the client and its tunnel run in B)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from real.sshd import SSHServer, sshd_missing_reason

REPO = Path(__file__).resolve().parents[2]

ROUTER = textwrap.dedent(
    """
    import sys, zmq
    ctx = zmq.Context(); router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    print(port, flush=True)
    while True:
        ident, msg = router.recv_multipart()
        router.send_multipart([ident, b"from A: " + msg])
    """
)

CLIENT = textwrap.dedent(
    """
    import json, socket, sys, zmq
    from ipcluster.tunnel import close_all, tunnel_url
    server, key, known, addr_a, port = sys.argv[1:6]
    result = {}
    probe = socket.socket(); probe.settimeout(3)
    result["direct"] = probe.connect_ex((addr_a, int(port)))  # refused: bound to A's loopback only
    probe.close()
    url = tunnel_url(f"tcp://127.0.0.1:{port}", server, keyfile=key, known_hosts=known, allow_agent=False,
                     interactive=False, ssh_config="/dev/null")
    ctx = zmq.Context(); dealer = ctx.socket(zmq.DEALER); dealer.linger = 0; dealer.rcvtimeo = 10000
    dealer.connect(url); dealer.send(b"hello from B")
    result["reply"] = dealer.recv().decode(); result["url"] = url
    dealer.close(); ctx.term(); close_all()
    print(json.dumps(result))
    """
)


def test_router_in_namespace_a_reached_from_b_only_through_tunnel(netns_pair, tmp_path):
    if sshd_missing_reason():
        pytest.skip(sshd_missing_reason())
    sshd = SSHServer(tmp_path / "sshd", host=netns_pair.addr_a, netns=netns_pair.a).start()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    router = subprocess.Popen(
        netns_pair.exec_prefix(netns_pair.a) + [sys.executable, "-c", ROUTER],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        port = int(router.stdout.readline())
        # from the test's own namespace neither A's loopback nor A's address is reachable
        with socket.socket() as probe:
            probe.settimeout(1)
            assert probe.connect_ex((netns_pair.addr_a, port)) != 0
        client = subprocess.run(
            netns_pair.exec_prefix(netns_pair.b)
            + [sys.executable, "-c", CLIENT, sshd.server, str(sshd.client_key), str(sshd.known_hosts)]
            + [netns_pair.addr_a, str(port)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert client.returncode == 0, client.stderr
        result = json.loads(client.stdout.strip().splitlines()[-1])
        assert result["direct"] != 0
        assert result["reply"] == "from A: hello from B"
        assert result["url"].startswith("tcp://127.0.0.1:")
    finally:
        router.kill()
        router.wait(5)
        sshd.stop()
