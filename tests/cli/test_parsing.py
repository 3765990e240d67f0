"""Argument and -c parsing with click's CliRunner (no processes are started)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from ipcluster.cli.common import Failure, parse_settings
from ipcluster.cli.main import cli
from ipcluster.error import ConfigError


def test_settings_parse_into_typed_overrides() -> None:
    got = parse_settings(("cluster.n=4", "launcher.ssh.engines={a = 2}", "engine.extra_args=--x 'y z'",
                          "controller.secure=false"))  # fmt: skip
    assert got == {
        "cluster": {"n": 4},
        "launcher.ssh": {"engines": {"a": 2}},
        "engine": {"extra_args": ["--x", "y z"]},
        "controller": {"secure": False},
    }


def test_settings_errors() -> None:
    with pytest.raises(Failure, match="expected SECTION.KEY=VALUE"):
        parse_settings(("n=4",))
    with pytest.raises(ConfigError, match="did you mean 'cluster'"):
        parse_settings(("clustr.n=4",))
    with pytest.raises(ConfigError, match="'x' is not an integer"):
        parse_settings(("cluster.n=x",))


def test_engines_requires_n(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IPCLUSTER_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["engines"])
    assert result.exit_code == 2 and "Missing option '-n'" in result.output


def test_stop_all_with_no_profiles(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IPCLUSTER_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["stop", "--all"])
    assert result.exit_code == 4 and "no cluster is running" in result.output


def test_list_and_clean_with_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IPCLUSTER_DIR", str(tmp_path))
    monkeypatch.setenv("IPCLUSTER_SHM_DIR", str(tmp_path))
    runner = CliRunner()
    assert runner.invoke(cli, ["list", "--json"]).output.strip() == "[]"
    assert "no clusters" in runner.invoke(cli, ["list"]).output
    assert "nothing to clean" in runner.invoke(cli, ["clean"]).output


def test_clean_removes_shared_memory_files_of_killed_processes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IPCLUSTER_DIR", str(tmp_path / "profiles"))
    shm = tmp_path / "shm"
    shm.mkdir()
    monkeypatch.setenv("IPCLUSTER_SHM_DIR", str(shm))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = int(gone.stdout)
    (shm / f"ipcluster-buf-{dead}-ab-1").write_bytes(b"x" * 100)
    (shm / "ipcluster-engine-cafe").write_text(f"cafe {dead}\n")
    (shm / f"ipcluster-buf-{os.getpid()}-ab-1").write_bytes(b"mine, alive")
    result = CliRunner().invoke(cli, ["clean"])
    assert result.exit_code == 0, result.output
    assert "cleaned 2 stale item(s)" in result.output
    assert [p.name for p in shm.iterdir()] == [f"ipcluster-buf-{os.getpid()}-ab-1"]


def test_stop_cluster_id_and_all_exclude_each_other(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("IPCLUSTER_DIR", str(tmp_path))
    result = CliRunner().invoke(cli, ["stop", "--all", "--cluster-id", "x"])
    assert result.exit_code == 2 and "exclude each other" in result.output
