"""ipcluster start / stop / list / engines / clean, run as real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
from pathlib import Path

import pytest
from conftest import IPCluster, all_gone, pids_of, wait_for_text

from ipcluster.launchers.process import pid_alive


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_daemonized_cluster_is_listed_and_stopped(ipc: IPCluster) -> None:
    result = ipc.run("start", "-n", "2", "--daemonize")
    assert result.returncode == 0, result.stderr
    assert "2 engines ready" in result.stdout
    security = ipc.profile / "security"
    assert mode(security) == 0o700
    for role in ("client", "engine"):
        assert mode(security / f"ipcontroller-{role}.json") == 0o600
    record = ipc.record()
    pids = pids_of(record)
    assert len(pids) == 3 and all(pid_alive(p, s) for p, s in pids)
    assert (ipc.profile / "log" / "ipengine-default-1.log").exists()

    [row] = ipc.clusters()
    assert row["state"] == "running" and row["engines_registered"] == 2 and row["engines_requested"] == 2
    assert row["launcher"] == "local" and row["profile"] == "default"
    table = ipc.run("list").stdout
    assert "running" in table and "2/2" in table

    result = ipc.run("stop")
    assert result.returncode == 0, result.stderr
    assert all_gone(pids)
    assert not (ipc.profile / "clusters" / "default.json").exists()
    assert not list(security.glob("ipcontroller-*.json"))
    assert ipc.clusters() == []


def test_start_twice_exits_3_and_leaves_the_first_running(ipc: IPCluster) -> None:
    assert ipc.run("start", "-n", "1", "--daemonize").returncode == 0
    pids = pids_of(ipc.record())
    result = ipc.run("start", "-n", "1", "--daemonize")
    assert result.returncode == 3
    assert "already running" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert all(pid_alive(p, s) for p, s in pids)
    assert ipc.clusters()[0]["engines_registered"] == 1
    assert ipc.run("stop").returncode == 0


def test_stop_when_nothing_runs_exits_4(ipc: IPCluster) -> None:
    result = ipc.run("stop")
    assert result.returncode == 4
    assert (
        result.stderr.strip()
        == "Error: no cluster 'default' is running in profile 'default' (see: ipcluster list)"
    )
    assert ipc.run("stop", "--all").returncode == 4


def test_engines_adds_to_a_running_cluster_and_stop_takes_them_too(ipc: IPCluster) -> None:
    assert ipc.run("start", "-n", "1", "--daemonize").returncode == 0
    result = ipc.run("engines", "-n", "2")
    assert result.returncode == 0, result.stderr
    assert "engines registered: 3/3" in result.stdout
    record = ipc.record()
    assert len(record["engines"]) == 2
    assert (ipc.profile / "log" / "ipengine-default-2.log").exists()  # numbered after the first engine
    [row] = ipc.clusters()
    assert (row["engines_registered"], row["engines_requested"]) == (3, 3)
    pids = pids_of(record)
    assert ipc.run("stop").returncode == 0
    assert all_gone(pids)


def test_engines_without_a_cluster_exits_4(ipc: IPCluster) -> None:
    result = ipc.run("engines", "-n", "1")
    assert result.returncode == 4
    assert "no cluster 'default' is running" in result.stderr


def test_two_clusters_side_by_side_by_cluster_id(ipc: IPCluster) -> None:
    assert ipc.run("start", "-n", "1", "--daemonize", "--cluster-id", "a").returncode == 0
    assert ipc.run("start", "-n", "1", "--daemonize", "--cluster-id", "b").returncode == 0
    assert (ipc.profile / "security" / "ipcontroller-a-client.json").exists()
    assert sorted(r["cluster_id"] for r in ipc.clusters()) == ["a", "b"]
    assert ipc.run("stop", "--cluster-id", "a").returncode == 0
    assert [r["cluster_id"] for r in ipc.clusters()] == ["b"]
    assert ipc.run("stop", "--all").returncode == 0
    assert ipc.clusters() == []


def test_foreground_ctrl_c_stops_everything(ipc: IPCluster, tmp_path: Path) -> None:
    log = tmp_path / "start.log"
    proc = ipc.popen("start", "-n", "2", log=log)
    try:
        wait_for_text(log, "press Ctrl-C", proc=proc)
        pids = pids_of(ipc.record())
        assert ipc.record()["owner_pid"] == proc.pid
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert "cluster stopped" in log.read_text()
    assert all_gone(pids)
    assert ipc.clusters() == []


def test_stop_from_another_terminal_ends_the_foreground_start(ipc: IPCluster, tmp_path: Path) -> None:
    log = tmp_path / "start.log"
    proc = ipc.popen("start", "-n", "1", log=log)
    try:
        wait_for_text(log, "press Ctrl-C", proc=proc)
        pids = pids_of(ipc.record())
        assert ipc.run("stop").returncode == 0
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert all_gone(pids)


def test_killing_the_foreground_start_leaves_no_orphans(ipc: IPCluster, tmp_path: Path) -> None:
    log = tmp_path / "start.log"
    proc = ipc.popen("start", "-n", "2", log=log)
    try:
        wait_for_text(log, "press Ctrl-C", proc=proc)
        pids = pids_of(ipc.record())
    finally:
        proc.kill()  # SIGKILL: no handler runs
        proc.wait()
    assert all_gone(pids, timeout=30)
    [row] = ipc.clusters()
    assert row["state"] == "stale"
    result = ipc.run("clean")
    assert result.returncode == 0 and "removed stale cluster 'default'" in result.stdout
    assert ipc.clusters() == []


def test_clean_removes_a_dead_daemonized_cluster(ipc: IPCluster) -> None:
    assert ipc.run("start", "-n", "1", "--daemonize").returncode == 0
    pids = pids_of(ipc.record())
    for pid, _ in pids:
        os.killpg(pid, signal.SIGKILL)
    assert all_gone(pids)
    assert ipc.clusters()[0]["state"] == "stale"
    result = ipc.run("stop")
    assert result.returncode == 4 and "stale record" in result.stderr
    assert ipc.clusters() == []
    assert not list((ipc.profile / "security").glob("ipcontroller-*.json"))


def test_port_in_use_shows_the_controller_log(ipc: IPCluster) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = ipc.run("start", "-n", "1", "--daemonize", "--", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.startswith("Error: the controller exited with status")
    assert "log/ipcontroller-default-" in result.stderr and str(port) in result.stderr
    assert ipc.clusters() == []


def test_engines_that_never_register_name_launcher_and_logs(ipc: IPCluster) -> None:
    result = ipc.run("start", "-n", "2", "--daemonize", "-c", "engine.extra_args=--no-such-option")
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(
        "Error: 0 of 2 engines registered, every engine exited: see the local engines launcher"
    )
    assert "ipengine-default-0.log" in first
    assert ipc.clusters() == []


def test_engines_not_registered_within_the_timeout(ipc: IPCluster, tmp_path: Path) -> None:
    # The engines read a connection file whose controller never answers, so they wait and never register.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    fake = tmp_path / "nowhere-engine.json"
    info = {
        "version": 1,
        "key": "00",
        "signature_scheme": "hmac-sha256",
        "transport": "tcp",
        "interface": "127.0.0.1",
    }
    info.update(
        {name: port for name in ("registration", "mux", "task", "control", "iopub", "hb_ping", "hb_pong")}
    )
    fake.write_text(json.dumps({**info, "hb_period": 1000, "hb_misses": 3}))
    fake.chmod(0o600)
    result = ipc.run(
        "start", "-n", "1", "--daemonize", "--timeout", "2", "-c", f"engine.extra_args=--file {fake}"
    )
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(
        "Error: 0 of 1 engines registered, not registered after 2 s: see the local engines launcher"
    )
    assert "ipengine-default-0.log" in first
    assert ipc.clusters() == []


def test_bad_config_file_is_one_line_and_exit_2(ipc: IPCluster) -> None:
    assert ipc.run("profile", "create", "default").returncode == 0
    toml = ipc.profile / "ipcluster.toml"
    toml.write_text(toml.read_text().replace("# timeout = 10.0", "timeuot = 3"))
    result = ipc.run("start", "-n", "1")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"Error: {toml}: unknown key 'timeuot' in [engine] (did you mean 'timeout'?); "
        "known keys: timeout, hb_grace, log_level, extra_args"
    )


def test_bad_option_values_exit_2(ipc: IPCluster) -> None:
    result = ipc.run("start", "--launcher", "lcoal")
    assert result.returncode == 2 and "did you mean 'local'?" in result.stderr
    result = ipc.run("start", "-c", "controller.scheme=fast")
    assert result.returncode == 2 and "allowed values are leastload" in result.stderr
    result = ipc.run("start", "-c", "nonsense")
    assert result.returncode == 2 and "expected SECTION.KEY=VALUE" in result.stderr


def test_unknown_profile_lists_known_ones(ipc: IPCluster) -> None:
    assert ipc.run("profile", "create", "work").returncode == 0
    result = ipc.run("start", "--profile", "wrok")
    assert result.returncode == 1
    assert "no profile 'wrok'" in result.stderr and "known profiles: work" in result.stderr


@pytest.mark.skipif(not __import__("shutil").which("mpiexec"), reason="needs mpiexec (apt: openmpi-bin)")
def test_mpi_launcher_starts_engines_under_mpiexec(ipc: IPCluster) -> None:
    ipc.env.update(
        OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1"
    )
    result = ipc.run("start", "-n", "2", "--launcher", "mpi", "--daemonize")
    assert result.returncode == 0, result.stderr + result.stdout
    record = ipc.record()
    assert record["engine_launcher"] == "mpi"
    argv = record["engines"][0]["state"]["processes"][0]["argv"]
    assert argv[:3] == ["mpiexec", "-n", "2"]
    assert ipc.clusters()[0]["engines_registered"] == 2
    pids = pids_of(record)
    assert ipc.run("stop").returncode == 0
    assert all_gone(pids)
    assert json.loads(ipc.run("list", "--json").stdout) == []


def test_foreground_start_reports_a_controller_that_dies(ipc: IPCluster, tmp_path: Path) -> None:
    log = tmp_path / "start.log"
    proc = ipc.popen("start", "-n", "1", log=log)
    try:
        wait_for_text(log, "press Ctrl-C", proc=proc)
        record = ipc.record()
        pids = pids_of(record)
        os.kill(record["controller"]["state"]["processes"][0]["pid"], signal.SIGKILL)
        assert proc.wait(30) == 1
    finally:
        proc.kill()
        proc.wait()
    assert "Error: the controller exited with status -9" in log.read_text()
    assert all_gone(pids)  # the engines were stopped too
    assert ipc.clusters() == []


def test_a_stale_record_does_not_block_start(ipc: IPCluster) -> None:
    assert ipc.run("start", "-n", "1", "--daemonize").returncode == 0
    old = pids_of(ipc.record())
    for pid, _ in old:
        os.killpg(pid, signal.SIGKILL)
    assert all_gone(old)
    result = ipc.run("start", "-n", "1", "--daemonize")
    assert result.returncode == 0, result.stderr
    assert ipc.clusters()[0]["state"] == "running"
    assert ipc.run("stop").returncode == 0


def test_concurrent_starts_yield_one_cluster(ipc: IPCluster, tmp_path: Path) -> None:
    procs = [ipc.popen("start", "-n", "1", "--daemonize", log=tmp_path / f"s{i}.log") for i in range(2)]
    codes = sorted(p.wait(90) for p in procs)
    assert codes == [0, 3], [(tmp_path / f"s{i}.log").read_text() for i in range(2)]
    assert len(ipc.clusters()) == 1 and ipc.clusters()[0]["engines_registered"] == 1
    assert ipc.run("stop").returncode == 0
