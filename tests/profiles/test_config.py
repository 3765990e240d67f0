"""The ipcluster.toml schema: layering, and one clear line for every bad key, type or value."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipcluster.error import ConfigError
from ipcluster.profiles.config import SECTIONS, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ipcluster.toml"
    path.write_text(text)
    return path


def test_defaults_when_there_is_no_file(tmp_path: Path) -> None:
    config = load_config(tmp_path / "missing.toml", env={})
    assert config.cluster.launcher == "local"
    assert config.cluster.n is None
    assert config.controller.ip == "127.0.0.1"
    assert config.launcher("ssh").engines == {}
    assert config.launcher("slurm").walltime == "01:00:00"


def test_layers_defaults_file_env_command_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[cluster]\nn = 2\nlauncher = "mpi"\n[controller]\nping = 500\n[launcher.ssh]\nengines = {node1 = 4}\n',
    )
    env = {"IPCLUSTER_CLUSTER_N": "3", "IPCLUSTER_LAUNCHER_SSH_PYTHON": "python3.12", "IPCLUSTER_DIR": "/x"}
    config = load_config(path, env=env, overrides={"cluster": {"n": 5}})
    assert config.cluster.n == 5  # command line beats environment beats file
    assert config.cluster.launcher == "mpi"  # file beats default
    assert config.controller.ping == 500
    assert config.launcher("ssh").engines == {"node1": 4}
    assert config.launcher("ssh").python == "python3.12"  # nested section from the environment
    assert load_config(path, env=env).cluster.n == 3


def test_unknown_key_names_file_key_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "[controller]\npnig = 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    msg = str(info.value)
    assert str(path) in msg and "'pnig'" in msg and "did you mean 'ping'?" in msg and "\n" not in msg


def test_unknown_section_suggests(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown section \[launcher.slrum\].*did you mean 'launcher.slurm'"
    ):
        load_config(write(tmp_path, "[launcher.slrum]\nqueue = 'x'\n"), env={})


def test_wrong_type_says_what_is_expected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[cluster\] n = 'four': expected an integer"):
        load_config(write(tmp_path, "[cluster]\nn = 'four'\n"), env={})
    with pytest.raises(ConfigError, match="expected a table of integers"):
        load_config(write(tmp_path, "[launcher.ssh]\nengines = {node1 = 'x'}\n"), env={})
    with pytest.raises(ConfigError, match="expected true or false"):
        load_config(write(tmp_path, "[controller]\nsecure = 1\n"), env={})


def test_bad_choice_lists_allowed_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"allowed values are leastload, lru.*did you mean 'leastload'"):
        load_config(write(tmp_path, "[controller]\nscheme = 'leastlaod'\n"), env={})


def test_below_minimum_and_bad_port_range(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be at least 1"):
        load_config(write(tmp_path, "[controller]\nhb_misses = 0\n"), env={})
    with pytest.raises(ConfigError, match="expected LO-HI"):
        load_config(write(tmp_path, "[controller]\nports = '9-1'\n"), env={})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[cluster\n")
    with pytest.raises(ConfigError, match=f"{path}: not valid TOML"):
        load_config(path, env={})


def test_environment_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="environment variable IPCLUSTER_CLUSTER_N: 'many' is not an integer"
    ):
        load_config(None, env={"IPCLUSTER_CLUSTER_N": "many"})
    with pytest.raises(ConfigError, match="IPCLUSTER_CONTROLLER_PIGN.*did you mean 'ping'"):
        load_config(None, env={"IPCLUSTER_CONTROLLER_PIGN": "5"})


def test_environment_lists_and_bools(tmp_path: Path) -> None:
    env = {"IPCLUSTER_ENGINE_EXTRA_ARGS": "--a 'b c'", "IPCLUSTER_CONTROLLER_SECURE": "no",
           "IPCLUSTER_LAUNCHER_MPI_ARGS": '["--oversubscribe"]'}  # fmt: skip
    config = load_config(None, env=env)
    assert config.engine.extra_args == ["--a", "b c"]
    assert config.controller.secure is False
    assert config.launcher("mpi").args == ["--oversubscribe"]


def test_every_section_has_help_for_every_key() -> None:
    from dataclasses import fields

    for cls in SECTIONS.values():
        for spec in fields(cls):
            assert spec.metadata["help"], spec.name
