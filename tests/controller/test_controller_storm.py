"""Registration storms: the controller listens with a deep backlog, and a pending registration outlives
TCP's SYN retries (a heart whose first connection attempt was dropped still completes it)."""

from __future__ import annotations

import re
import subprocess
import time

from cluster_helpers import read_stderr

from ipcluster.controller.controller import listen_backlog


def _backlogs(pid_ports: list[int]) -> dict[int, int]:
    """{port: backlog} of listening TCP sockets (``ss``'s Send-Q of a LISTEN socket is its backlog)."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, timeout=10).stdout
    found = {}
    for line in out.splitlines():
        parts = line.split()
        m = re.search(r":(\d+)$", parts[3])
        if m and int(m.group(1)) in pid_ports:
            found[int(m.group(1))] = int(parts[2])
    return found


def test_bound_sockets_listen_with_a_deep_backlog(cluster):
    eng = cluster.engine(register=False)
    ports = [eng.info[k] for k in ("registration", "mux", "task", "control", "iopub", "hb_ping", "hb_pong")]
    backlogs = _backlogs(ports)
    assert set(backlogs) == set(ports)
    want = listen_backlog()
    assert want >= min(1024, int(open("/proc/sys/net/core/somaxconn").read()))
    assert all(b == want for b in backlogs.values()), backlogs  # zmq's default is 100


def test_a_registration_waits_longer_than_tcp_syn_retries_for_its_first_pong(start_cluster):
    cluster = start_cluster("--ping", "100")
    eng = cluster.engine(register=False, beat=False)
    eng.register()
    time.sleep(
        6.5
    )  # the delay under test, not a wait for an event: longer than the old max(5 s, 3 pings) purge; the heart's SYN retries take 1, 3, 7 s
    eng.heart.start()
    cluster.wait_registered(eng)
    assert "purged" not in read_stderr(cluster.proc)
