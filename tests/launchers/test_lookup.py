"""Finding launchers by name: built-ins, planned ones, typos."""

from __future__ import annotations

import pytest

from ipcluster.error import ConfigError
from ipcluster.launchers import available_launchers, find_launcher
from ipcluster.launchers.local import LocalControllerLauncher, LocalEngineSetLauncher
from ipcluster.launchers.mpi import MPIEngineSetLauncher


def test_builtins() -> None:
    assert find_launcher("local", "controller") is LocalControllerLauncher
    assert find_launcher("local", "engines") is LocalEngineSetLauncher
    assert find_launcher("mpi", "engines") is MPIEngineSetLauncher
    assert {"local", "mpi"} <= set(available_launchers())


def test_typo_suggests_and_lists_available() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown launcher 'lcoal' \(did you mean 'local'\?\); available: local"
    ):
        find_launcher("lcoal", "engines")


def test_planned_launcher_says_not_available_yet() -> None:
    with pytest.raises(ConfigError, match="'slurm' launcher is not available in this version yet"):
        find_launcher("slurm", "engines")


def test_plugin_launcher_found_through_entry_points(tmp_path, monkeypatch) -> None:
    (tmp_path / "myplug.py").write_text(
        "from ipcluster.launchers import LocalEngineSetLauncher\n"
        "class PlugEngines(LocalEngineSetLauncher):\n"
        "    name = 'myplug'\n"
        "engine_launcher = PlugEngines\n"
    )
    dist = tmp_path / "myplug-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[ipcluster.launchers]\nmyplug = myplug\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "myplug" in available_launchers()
    assert find_launcher("myplug", "engines").__name__ == "PlugEngines"
    with pytest.raises(ConfigError, match="'myplug' launcher cannot start the controller"):
        find_launcher("myplug", "controller")
