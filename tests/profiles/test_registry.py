"""The cluster registry: one atomic JSON record per cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipcluster.error import ProfileError
from ipcluster.profiles.dirs import ProfileDir
from ipcluster.profiles.registry import (
    ClusterRecord,
    list_records,
    read_record,
    registry_path,
    remove_record,
    write_record,
)


@pytest.fixture
def profile(tmp_path: Path) -> ProfileDir:
    return ProfileDir(tmp_path / "profile_t").ensure()


def test_round_trip_and_paths(profile: ProfileDir) -> None:
    rec = ClusterRecord(cluster_id="", profile="t", profile_dir=str(profile.path), n=3,
                        engines=[{"engine_count": 2}, {"engine_count": 1}])  # fmt: skip
    path = write_record(profile, rec)
    assert path == profile.path / "clusters" / "default.json"
    assert registry_path(profile, "abc").name == "abc.json"
    back = read_record(profile, "")
    assert back == rec
    assert back.engine_count == 3
    assert [r.cluster_id for r in list_records(profile)] == [""]
    assert not list(profile.clusters_dir.glob(".*"))  # no temp file left by the atomic write
    assert remove_record(profile, "") and read_record(profile, "") is None


def test_unreadable_record_is_a_clear_error_and_skipped_by_list(profile: ProfileDir) -> None:
    (profile.clusters_dir / "x.json").write_text("{not json")
    with pytest.raises(ProfileError, match="ipcluster clean"):
        read_record(profile, "x")
    assert list_records(profile) == []
