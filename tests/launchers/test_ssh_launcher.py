"""The ssh launcher against a real sshd on loopback: the "remote" host is this machine, logged into over SSH.

Remote processes are detached (setsid), so they are not children of pytest: every test checks by pid that
the engines (and a remote controller) it started are gone at the end.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, so `real` imports as a package

from real.fixtures import sshd, sshd_factory  # noqa: E402,F401
from real.sshd import SSHServer, free_port, keygen  # noqa: E402

from ipcluster.cluster import Cluster, EnginesTimeout  # noqa: E402
from ipcluster.error import ConfigError, IPClusterError  # noqa: E402
from ipcluster.launchers import LaunchContext  # noqa: E402
from ipcluster.launchers.process import wait_until  # noqa: E402
from ipcluster.launchers.ssh import SSHEngineSetLauncher, parse_hosts  # noqa: E402
from ipcluster.profiles.config import load_config  # noqa: E402
from ipcluster.tunnel import close_all  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def ssh_section(server: SSHServer, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    """[launcher.ssh] for the test server: its key and known_hosts only, never the real ~/.ssh."""
    empty = tmp_path / "empty_ssh_config"
    empty.touch()
    section = {
        "engines": {server.server: 2},
        "python": sys.executable,
        "sshkey": str(server.client_key),
        "known_hosts": str(server.known_hosts),
        "ssh_config": str(empty),
        "remote_profile_dir": str(tmp_path / "remote"),
    }
    section.update(extra)
    return section


def dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def remote_pids(cluster: Cluster) -> list[int]:
    launchers = [*cluster.engine_sets, cluster.controller]
    return [p.pid for lau in launchers if lau is not None for p in getattr(lau, "processes", [])]


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    close_all()


@pytest.fixture
def clusters() -> Iterator[list[tuple[Cluster, list[int]]]]:
    """Clusters to stop after the test; the pids registered with them must all be gone."""
    made: list[tuple[Cluster, list[int]]] = []
    yield made
    for cluster, pids in made:
        pids += remote_pids(cluster)
        cluster.stop_cluster_sync()
    for _cluster, pids in made:
        assert wait_until(lambda pids=pids: all(dead(p) for p in pids), 10), f"left running: {pids}"


def test_ssh_engines_run_with_per_host_python_and_env_and_stop_kills_exactly_them(
    sshd: SSHServer,  # noqa: F811
    tmp_path: Path,
    clusters: list,
) -> None:
    section = ssh_section(
        sshd, tmp_path,
        python="/nonexistent/python3",  # the per-host setting below must win
        host_python={sshd.server: sys.executable},
        env_setup="export IPC_SSH_TEST=global",
        host_env_setup={sshd.server: "export IPC_SSH_TEST=activated"},
    )  # fmt: skip
    cluster = Cluster(
        profile_dir=tmp_path / "profile", config={"cluster": {"launcher": "ssh"}, "launcher.ssh": section}
    )
    pids: list[int] = []
    clusters.append((cluster, pids))
    cluster.start_cluster_sync()
    assert cluster.engine_count == 2
    assert cluster.wait_for_engines_sync(timeout=60) == 2
    rc = cluster.connect_client()
    try:
        found = rc[:].apply_sync(
            lambda: (__import__("os").getpid(), __import__("os").environ["IPC_SSH_TEST"])
        )
    finally:
        rc.close()
    engines = cluster.engine_sets[0]
    pids += [p.pid for p in engines.processes]
    assert sorted(pid for pid, _ in found) == sorted(pids)
    assert {env for _, env in found} == {"activated"}
    # the registry holds the remote pids and hosts, so another process can stop them
    record = json.loads(next((tmp_path / "profile").glob("clusters/*.json")).read_text())
    saved = record["engines"][0]["state"]["processes"]
    assert [(p["host"], p["pid"]) for p in saved] == [(sshd.server, pid) for pid in pids]
    remote_file = tmp_path / "remote" / "security" / "ipcontroller-engine.json"
    assert stat.S_IMODE(remote_file.stat().st_mode) == 0o600
    cluster.stop_engines_sync()
    assert all(dead(p) for p in pids)
    for log in engines.log_paths:  # fetched back from the remote host
        assert "registered with the controller" in log.read_text()


def test_cli_start_and_engines_with_launcher_ssh_and_hosts(sshd: SSHServer, tmp_path: Path) -> None:  # noqa: F811
    profile = tmp_path / "profile"
    profile.mkdir()
    section = ssh_section(sshd, tmp_path, engines={sshd.server: 1})
    lines = ["[launcher.ssh]"] + [
        f"{k} = {json.dumps(v) if not isinstance(v, dict) else _table(v)}" for k, v in section.items()
    ]
    (profile / "ipcluster.toml").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "IPCLUSTER_DIR": str(tmp_path / "ipc")}

    def ipcluster(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "ipcluster", *args, "--profile-dir", str(profile)],
                              env=env, capture_output=True, text=True, timeout=90)  # fmt: skip

    started = ipcluster("start", "--launcher=ssh", "--daemonize")
    pids: list[int] = []
    try:
        assert started.returncode == 0, started.stderr
        assert "1 engines ready" in started.stdout
        more = ipcluster("engines", "-n", "2", "--hosts", f"{sshd.server}=2")
        assert more.returncode == 0, more.stderr
        listed = json.loads(ipcluster("list", "--json").stdout)
        assert listed[0]["engines_registered"] == 3
        record = json.loads(next((profile / "clusters").glob("*.json")).read_text())
        pids = [p["pid"] for s in record["engines"] for p in s["state"]["processes"]]
        assert len(pids) == 3 and not any(dead(p) for p in pids)
    finally:
        stopped = ipcluster("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert wait_until(lambda: all(dead(p) for p in pids), 10)


def _table(value: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in value.items()) + "}"


def test_controller_launcher_ssh_fetches_connection_files(
    sshd: SSHServer,  # noqa: F811
    tmp_path: Path,
    clusters: list,
) -> None:
    section = ssh_section(sshd, tmp_path, engines={sshd.server: 1}, controller_host=sshd.server)
    config = {"cluster": {"launcher": "ssh", "controller_launcher": "ssh"}, "launcher.ssh": section}
    cluster = Cluster(profile_dir=tmp_path / "profile", config=config)
    pids: list[int] = []
    clusters.append((cluster, pids))
    cluster.start_cluster_sync()
    pids += remote_pids(cluster)
    local = cluster.connection_file("client")
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    assert (tmp_path / "remote" / "security" / "ipcontroller-client.json").exists()  # written remotely
    assert cluster.wait_for_engines_sync(timeout=60) == 1
    rc = cluster.connect_client()
    try:
        assert rc[:].apply_sync(lambda: 6 * 7) == [42]
    finally:
        rc.close()
    cluster.stop_cluster_sync()
    assert all(dead(p) for p in pids)
    assert "ipcontroller" in cluster_log(tmp_path).read_text().lower()


def cluster_log(tmp_path: Path) -> Path:
    return next((tmp_path / "profile" / "log").glob("ipcontroller-*.log"))


def test_engine_dying_at_start_names_the_host_and_leaves_nothing(
    sshd: SSHServer,  # noqa: F811
    tmp_path: Path,
    clusters: list,
) -> None:
    config = {
        "cluster": {"launcher": "ssh"},
        "engine": {"extra_args": ["--no-such-option"]},
        "launcher.ssh": ssh_section(sshd, tmp_path),
    }
    cluster = Cluster(profile_dir=tmp_path / "profile", config=config)
    pids: list[int] = []
    clusters.append((cluster, pids))
    cluster.start_cluster_sync()
    pids += remote_pids(cluster)
    with pytest.raises(EnginesTimeout) as info:
        cluster.wait_for_engines_sync(timeout=60)
    first = str(info.value).splitlines()[0]
    assert "every engine exited" in first and sshd.server in first
    assert "no-such-option" in str(info.value)  # the fetched remote log's tail


# -- bad input: one line naming the host and the fix, and nothing started ----------------------------------


def _other_key(server: SSHServer, tmp_path: Path) -> dict[str, Any]:
    return {"sshkey": str(keygen(tmp_path / "stranger", "stranger"))}


def _unknown_host(server: SSHServer, tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "empty_known_hosts").write_text("")
    return {"known_hosts": str(tmp_path / "empty_known_hosts")}


def _changed_host(server: SSHServer, tmp_path: Path) -> dict[str, Any]:
    impostor = keygen(tmp_path / "impostor", "impostor")
    key = " ".join(impostor.with_suffix(".pub").read_text().split()[:2])
    (tmp_path / "changed_known_hosts").write_text(f"{server.known_hosts_name} {key}\n")
    return {"known_hosts": str(tmp_path / "changed_known_hosts")}


BAD = {
    "unreachable": (lambda s, t: {"engines": {f"{s.user}@127.0.0.1:{free_port()}": 1}}, "127.0.0.1"),
    "auth_refused": (_other_key, "127.0.0.1"),
    "unknown_host_key": (_unknown_host, "--ssh-accept-new"),
    "changed_host_key": (_changed_host, "ssh-keygen -R"),
    "missing_key_file": (lambda s, t: {"sshkey": str(t / "no_such_key")}, "no_such_key"),
    "python_missing": (lambda s, t: {"python": "/nonexistent/bin/python3"}, "set [launcher.ssh] python"),
    "env_setup_fails": (lambda s, t: {"env_setup": "false"}, "fix [launcher.ssh] env_setup"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_naming_host_and_fix(sshd: SSHServer, tmp_path: Path, case: str) -> None:  # noqa: F811
    make_extra, fix = BAD[case]
    profile = tmp_path / "profile"
    (profile / "security").mkdir(parents=True)
    (profile / "security" / "ipcontroller-engine.json").write_text("{}")
    config = load_config(
        overrides={"launcher.ssh": ssh_section(sshd, tmp_path, **make_extra(sshd, tmp_path))}
    )
    launcher = SSHEngineSetLauncher(LaunchContext(profile, config=config))
    with pytest.raises(IPClusterError) as info:
        launcher.start()
    message = str(info.value)
    assert "\n" not in message
    assert fix in message
    assert "127.0.0.1" in message
    assert launcher.processes == []


def test_ipcluster_missing_on_remote_python(sshd: SSHServer, tmp_path: Path) -> None:  # noqa: F811
    bare = "/usr/bin/python3"
    if (
        not Path(bare).exists()
        or subprocess.run([bare, "-c", "import ipcluster"], capture_output=True).returncode == 0
    ):
        pytest.skip(f"needs a Python without ipcluster at {bare}")
    profile = tmp_path / "profile"
    (profile / "security").mkdir(parents=True)
    (profile / "security" / "ipcontroller-engine.json").write_text("{}")
    config = load_config(overrides={"launcher.ssh": ssh_section(sshd, tmp_path, python=bare)})
    with pytest.raises(IPClusterError, match="cannot import ipcluster; install it there"):
        SSHEngineSetLauncher(LaunchContext(profile, config=config)).start()


def test_parse_hosts() -> None:
    assert parse_hosts("node1=4,me@node2:2222=2 node3") == {"node1": 4, "me@node2:2222": 2, "node3": 1}
    with pytest.raises(ConfigError, match="HOST=N"):
        parse_hosts("node1=0")


UNPRIVILEGED = os.environ.get("IPCLUSTER_TEST_SSH_USER", "ipctest")


@pytest.fixture
def unprivileged_sshd() -> Iterator[SSHServer]:
    """An sshd (run by root) that the tests log into as an unprivileged account, from a world-readable dir."""
    import pwd
    import shutil
    import tempfile

    from real.sshd import sshd_missing_reason

    reason = sshd_missing_reason()
    if reason:
        pytest.skip(reason)
    if os.geteuid() != 0:
        pytest.skip("logging in as another account needs the tests to run as root")
    try:
        pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        pytest.skip(
            f"no unprivileged account {UNPRIVILEGED!r}: useradd -m {UNPRIVILEGED}; usermod -p '*' {UNPRIVILEGED}"
        )
    top = Path(tempfile.mkdtemp(prefix="ipc-sshd-"))
    top.chmod(0o755)  # sshd reads authorized_keys as the logged-in user
    server = SSHServer(top / "sshd")
    server.user = UNPRIVILEGED
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(top, ignore_errors=True)


def test_ssh_engines_as_an_unprivileged_user(
    unprivileged_sshd: SSHServer, tmp_path: Path, clusters: list
) -> None:
    server = unprivileged_sshd
    remote_dir = f".ipcluster-tests/{os.getpid()}-{tmp_path.name}"  # under the remote user's home
    section = ssh_section(server, tmp_path, engines={server.server: 1}, remote_profile_dir=remote_dir)
    cluster = Cluster(
        profile_dir=tmp_path / "profile", config={"cluster": {"launcher": "ssh"}, "launcher.ssh": section}
    )
    probe = SSHEngineSetLauncher(cluster.context)
    try:
        probe.check_python(server.server)
    except IPClusterError as exc:
        pytest.skip(f"{UNPRIVILEGED} cannot run this test's Python ({sys.executable}): {exc}")
    pids: list[int] = []
    clusters.append((cluster, pids))
    cluster.start_cluster_sync()
    pids += remote_pids(cluster)
    assert cluster.wait_for_engines_sync(timeout=60) == 1
    rc = cluster.connect_client()
    try:
        assert rc[:].apply_sync(lambda: __import__("getpass").getuser()) == [UNPRIVILEGED]
    finally:
        rc.close()
    cluster.stop_cluster_sync()
    assert all(dead(p) for p in pids)
    probe.run(server.server, f"rm -rf {remote_dir}", setup=False)
