"""A whole cluster through SSH tunnels, between two network namespaces acting as two hosts.

Namespace A runs sshd and the controller, bound to A's 127.0.0.1 only; namespace B runs two engines and a
client, which reach the controller only through the SSH server (checked: a direct connect is refused).
Computations run; then the SSH server goes away long enough for the controller to fail the engines, and
comes back on the same port: the tunnels reconnect, the engines re-register under their old ids, and their
namespaces (and processes) are the ones from before.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from real.netns import NetnsPair
from real.sshd import SSHServer, wait_until

CLIENT = textwrap.dedent(
    """
    import json, os, socket, sys, time
    from ipcluster.client import Client

    client_file, server, key, known_hosts, ssh_config, addr_a = sys.argv[1:7]
    info = json.load(open(client_file))
    probe = socket.socket()
    probe.settimeout(5)
    direct = probe.connect_ex((addr_a, info["registration"]))  # the controller must not be reachable directly
    probe.close()
    options = dict(known_hosts=known_hosts, ssh_config=ssh_config, allow_agent=False, look_for_keys=False,
                   interactive=False)
    rc = Client(url_file=client_file, sshserver=server, sshkey=key, ssh_options=options, timeout=30)
    rc.wait_for_engines(2, timeout=60)

    def where():
        import os
        return os.getpid(), state

    def report(phase):
        deadline = time.monotonic() + 60
        while True:
            try:
                ids = sorted(rc.ids)
                dv = rc[ids]
                dv.block = True
                found = dict(zip(ids, dv.apply_sync(where)))
                if len(found) == 2:
                    break
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        print(json.dumps({"phase": phase, "direct": direct, "engines": {str(k): v for k, v in found.items()}}),
              flush=True)

    dv = rc[:]
    dv.block = True
    dv.execute("state = 'kept'")
    assert dv.apply_sync(lambda x: x * x, 7) == [49, 49]
    report("before")
    sys.stdin.readline()  # the test cuts the SSH connection and brings it back
    report("after")
    rc.close()
    """
)


@pytest.fixture
def two_hosts(netns_pair: NetnsPair, tmp_path: Path) -> Iterator[tuple[NetnsPair, SSHServer]]:
    server = SSHServer(tmp_path / "sshd", host=netns_pair.addr_a, netns=netns_pair.a).start()
    try:
        yield netns_pair, server
    finally:
        server.stop()


def _spawn(
    prefix: list[str], argv: list[str], log: Path, env: dict[str, str], **kw: object
) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(prefix + argv, stdout=kw.pop("stdout", out), stderr=out, env=env, **kw)  # type: ignore[call-overload]


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.timeout(180)
def test_cluster_through_tunnel_survives_ssh_outage_with_ids_and_state(
    two_hosts: tuple[NetnsPair, SSHServer], tmp_path: Path
) -> None:
    pair, server = two_hosts
    profile = tmp_path / "profile"
    home = tmp_path / "home"  # the engines' ~/.ssh: this server's known_hosts, an empty config
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(server.known_hosts.read_text())
    (home / ".ssh" / "config").write_text("")
    env = {**os.environ, "HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("SSH_AUTH_SOCK", None)
    logs = tmp_path / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen] = []
    try:
        controller = _spawn(
            pair.exec_prefix(pair.a),
            [sys.executable, "-m", "ipcluster.controller", "--profile-dir", str(profile), "--ip", "127.0.0.1",
             "--ping", "300", "--hb-misses", "3", "--log-level", "DEBUG"],
            logs / "controller.log", env,
        )  # fmt: skip
        procs.append(controller)
        client_file = profile / "security" / "ipcontroller-client.json"
        engine_file = profile / "security" / "ipcontroller-engine.json"
        wait_until(lambda: client_file.exists() and engine_file.exists(), 30, what="connection files")
        for i in range(2):
            procs.append(
                _spawn(
                    pair.exec_prefix(pair.b),
                    [
                        sys.executable,
                        "-m",
                        "ipcluster.engine",
                        "--file",
                        str(engine_file),
                        "--ssh",
                        server.server,
                        "--sshkey",
                        str(server.client_key),
                        "--hb-grace",
                        "60000",
                        "--log-level",
                        "DEBUG",
                    ],
                    logs / f"engine{i}.log",
                    env,
                )  # fmt: skip
            )
        script = tmp_path / "client.py"
        script.write_text(CLIENT)
        empty = tmp_path / "empty_ssh_config"
        empty.write_text("")
        client = _spawn(
            pair.exec_prefix(pair.b),
            [sys.executable, str(script), str(client_file), server.server, str(server.client_key),
             str(server.known_hosts), str(empty), pair.addr_a],
            logs / "client.log", env, stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(client)
        before = _read_report(client, logs)
        assert before["phase"] == "before"
        assert before["direct"] != 0, "the controller must be reachable only through the tunnel"
        assert sorted(before["engines"]) == ["0", "1"]

        # The outage: sshd and every session gone until the controller has failed both engines.
        server.stop()
        controller_log = logs / "controller.log"
        wait_until(lambda: len(re.findall(r"engine \d+ \(\w+\) unregistered", controller_log.read_text())) >= 2,
                   30, what="the controller to fail both engines")  # fmt: skip
        server.start()
        client.stdin.write("go\n")
        client.stdin.flush()
        after = _read_report(client, logs)
        assert after["phase"] == "after"
        assert after["engines"] == before["engines"], "same ids, same processes, same namespaces"
        assert all(state == "kept" for _pid, state in after["engines"].values())
        assert client.wait(30) == 0, (logs / "client.log").read_text()
        for i in range(2):
            assert "re-registered as engine" in (logs / f"engine{i}.log").read_text()
    finally:
        _stop(procs[::-1])


def _read_report(client: subprocess.Popen, logs: Path) -> dict:
    line = client.stdout.readline()
    if not line:
        client.wait(10)
        details = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.iterdir()))
        raise AssertionError(f"the client exited with {client.returncode}:\n{details}")
    return json.loads(line)
