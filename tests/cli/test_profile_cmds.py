"""ipcluster profile create / list / locate, as a user runs them."""

from __future__ import annotations

import json
import stat

from conftest import IPCluster


def test_create_list_locate(ipc: IPCluster) -> None:
    result = ipc.run("profile", "create", "slurm")
    assert result.returncode == 0, result.stderr
    path = ipc.base / "profile_slurm"
    assert result.stdout.strip() == f"created profile 'slurm' at {path}"
    assert stat.S_IMODE((path / "security").stat().st_mode) == 0o700
    assert '\nlauncher = "slurm"' in (path / "ipcluster.toml").read_text()

    assert ipc.run("profile", "create", "work", "--template", "mpi").returncode == 0
    assert '\nlauncher = "mpi"' in (ipc.base / "profile_work" / "ipcluster.toml").read_text()

    listed = json.loads(ipc.run("profile", "list", "--json").stdout)
    assert [(p["name"], p["running_clusters"]) for p in listed] == [("slurm", 0), ("work", 0)]
    assert "slurm" in ipc.run("profile", "list").stdout

    assert ipc.run("profile", "locate", "slurm").stdout.strip() == str(path)


def test_create_existing_needs_force(ipc: IPCluster) -> None:
    assert ipc.run("profile", "create", "work").returncode == 0
    result = ipc.run("profile", "create", "work")
    assert result.returncode == 1
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert ipc.run("profile", "create", "work", "--force", "--template", "pbs").returncode == 0
    assert '\nlauncher = "pbs"' in (ipc.base / "profile_work" / "ipcluster.toml").read_text()


def test_locate_unknown_lists_known(ipc: IPCluster) -> None:
    ipc.run("profile", "create", "work")
    result = ipc.run("profile", "locate", "wrk")
    assert result.returncode == 1
    assert "no profile 'wrk'" in result.stderr and "known profiles: work" in result.stderr


def test_unknown_template_is_a_usage_error(ipc: IPCluster) -> None:
    result = ipc.run("profile", "create", "x", "--template", "slurmm")
    assert result.returncode == 2 and "slurmm" in result.stderr


def test_python_dash_m_and_help_document_exit_codes(ipc: IPCluster) -> None:
    result = ipc.run("--help")
    assert result.returncode == 0
    for line in ("3  the cluster is already running", "4  no such cluster is running"):
        assert line in result.stdout
    assert "--daemonize" in ipc.run("start", "--help").stdout
