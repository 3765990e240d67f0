"""Creating and opening profiles: directory tree, permissions, config file from the template."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from ipcluster.error import ProfileError
from ipcluster.profiles.manage import create_profile, open_profile


@pytest.fixture(autouse=True)
def base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IPCLUSTER_DIR", str(tmp_path))
    return tmp_path


def test_create_writes_tree_with_private_security_dir(base: Path) -> None:
    prof = create_profile("work")
    assert prof.path == base / "profile_work"
    assert stat.S_IMODE(prof.security_dir.stat().st_mode) == 0o700
    assert prof.log_dir.is_dir() and prof.clusters_dir.is_dir()
    assert "template 'local'" in prof.config_file.read_text()


def test_profile_named_like_template_gets_it_unless_told(base: Path) -> None:
    assert '\nlauncher = "mpi"' in create_profile("mpi").config_file.read_text()
    assert "template 'local'" in create_profile("mpi2", template="local").config_file.read_text()


def test_existing_profile_needs_force(base: Path) -> None:
    prof = create_profile("work")
    prof.config_file.write_text("# mine\n")
    with pytest.raises(ProfileError, match="already exists.*--force"):
        create_profile("work")
    create_profile("work", template="sge", force=True)
    assert '\nlauncher = "sge"' in prof.config_file.read_text()


def test_unknown_template_and_bad_name(base: Path) -> None:
    with pytest.raises(ProfileError, match="unknown template 'slurmm'"):
        create_profile("x", template="slurmm")
    with pytest.raises(ProfileError, match="invalid profile name"):
        create_profile("../evil")


def test_default_created_on_first_use_other_names_listed_when_missing(base: Path) -> None:
    prof = open_profile(None)
    assert prof.name == "default" and prof.config_file.is_file()
    with pytest.raises(ProfileError, match="known profiles: default"):
        open_profile("nope")
