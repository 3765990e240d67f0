"""The commands as a new user types them: ipcluster start/stop/list/profile, ipcontroller + ipengine."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from acceptance_cluster import cleanup, ipcluster, run_script, user_env


@pytest.fixture
def base(tmp_path: Path):
    yield tmp_path
    cleanup(tmp_path)


def test_version_and_help_of_every_command(base):
    assert ipcluster(base, "--version").stdout.strip().endswith("0.1.0")
    for cmd in (["ipcontroller", "--help"], ["ipengine", "--help"]):
        module = "ipcluster.controller" if cmd[0] == "ipcontroller" else "ipcluster.engine"
        result = subprocess.run(
            [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and "--profile" in result.stdout
    for exe in ("ipcluster", "ipcontroller", "ipengine"):
        path = Path(sys.executable).with_name(exe)
        if path.exists():
            assert subprocess.run([str(path), "--help"], capture_output=True, timeout=60).returncode == 0


def test_profile_create_list_locate(base):
    created = ipcluster(base, "profile", "create", "foo")
    assert created.returncode == 0 and (base / "profile_foo" / "ipcluster.toml").exists()
    again = ipcluster(base, "profile", "create", "foo")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert "profile_foo" in ipcluster(base, "profile", "list").stdout
    assert ipcluster(base, "profile", "locate", "foo").stdout.strip() == str(base / "profile_foo")


def test_start_with_a_new_profile_creates_it_and_stop_names_it(base):
    result = ipcluster(base, "start", "-n", "2", "--profile=work", "--daemonize", "--timeout", "90")
    assert result.returncode == 0, result.stderr
    assert "created profile 'work'" in result.stdout
    assert "ipcluster stop --profile work" in result.stdout
    out = run_script(
        base,
        """
        import ipcluster as ipp
        rc = ipp.Client(profile="work")
        rc.wait_for_engines(2, timeout=60)
        print(sorted(rc[:].apply_sync(lambda: 7)))
        rc.close()
        """,
    )
    assert out.returncode == 0 and out.stdout.strip() == "[7, 7]", out.stderr
    assert "work" in ipcluster(base, "list").stdout
    assert ipcluster(base, "stop", "--profile=work").returncode == 0
    # a name close to an existing profile is a typo, not a new profile
    typo = ipcluster(base, "start", "-n", "1", "--profile=wrok", "--daemonize")
    assert typo.returncode == 1 and "known profiles" in typo.stderr
    assert not (base / "profile_wrok").exists()


@pytest.mark.skipif(not shutil.which("mpiexec"), reason="needs mpiexec (apt: openmpi-bin)")
def test_start_profile_mpi_runs_engines_under_mpiexec(base):
    result = ipcluster(base, "start", "-n", "4", "--profile=mpi", "--daemonize", "--timeout", "90")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "template mpi" in result.stdout and "mpi launcher" in result.stdout
    try:
        out = run_script(
            base,
            """
            import ipcluster as ipp
            rc = ipp.Client(profile='mpi')
            rc.wait_for_engines(4, timeout=60)
            ranks = rc[:].apply_sync(lambda: __import__("os").environ.get("OMPI_COMM_WORLD_RANK", "?"))
            print(len(rc.ids), len(set(ranks)))
            rc.close()
            """,
        )
        assert out.returncode == 0 and out.stdout.split() == ["4", "4"], out.stderr
    finally:
        stopped = ipcluster(base, "stop", "--profile=mpi")
    assert stopped.returncode == 0, stopped.stderr


def _spawn(base: Path, *argv: str) -> subprocess.Popen:
    log = open(base / f"{argv[0]}-{time.monotonic_ns()}.log", "wb")
    return subprocess.Popen(
        [sys.executable, "-m", *argv], env=user_env(base), stdout=log, stderr=log, stdin=subprocess.DEVNULL
    )


def test_manual_ipcontroller_and_ipengines_stop_on_hub_shutdown(base):
    controller = _spawn(base, "ipcluster.controller", "--ip=127.0.0.1", "--port=0")
    engines: list[subprocess.Popen] = []
    try:
        client_file = base / "profile_default" / "security" / "ipcontroller-client.json"
        deadline = time.monotonic() + 60
        while not client_file.exists():
            assert controller.poll() is None and time.monotonic() < deadline, "controller did not start"
            time.sleep(0.05)
        engines = [
            _spawn(base, "ipcluster.engine"),
            _spawn(base, "ipcluster.engine", "--profile-dir", str(base / "profile_default")),
        ]
        out = run_script(
            base,
            """
            import ipcluster as ipp
            rc = ipp.Client()
            rc.wait_for_engines(2, timeout=60)
            assert rc[:].apply_sync(lambda: 1) == [1, 1]
            rc.shutdown(hub=True)
            rc.close()
            """,
        )
        assert out.returncode == 0, out.stderr
        assert controller.wait(60) == 0
        assert [e.wait(60) for e in engines] == [0, 0]
    finally:
        for proc in [controller, *engines]:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
