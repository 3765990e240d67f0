"""The cluster registry: one JSON file per cluster, ``<profile>/clusters/<cluster_id or 'default'>.json``.

It records what the launchers started (their ``to_dict()`` state: pids, hosts, job ids), so ``ipcluster stop``,
``list`` and re-attaching work from any later process. The file is written atomically. It is a record, not a
promise: whoever reads it checks that the processes are still alive before trusting it (see
``ipcluster.cluster``), and a record whose processes are dead is reported as stale.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ipcluster.error import ProfileError

from .connection import write_atomic
from .dirs import ProfileDir

REGISTRY_VERSION = 1


def record_name(cluster_id: str) -> str:
    return cluster_id or "default"


@dataclass
class ClusterRecord:
    """What one cluster started; enough to stop it or attach to it from another process."""

    cluster_id: str
    profile: str
    profile_dir: str
    n: int = 0
    engine_launcher: str = "local"
    controller_launcher: str = "local"
    controller: dict[str, Any] = field(default_factory=dict)
    engines: list[dict[str, Any]] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    owner_pid: int | None = None  # the foreground `ipcluster start` (or Python process) that stops it on exit
    owner_start_time: int | None = None
    daemonized: bool = False
    version: int = REGISTRY_VERSION

    @property
    def engine_count(self) -> int:
        """Engines requested so far, over every engine launcher."""
        return sum(int(e.get("engine_count", 0)) for e in self.engines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "registry") -> ClusterRecord:
        if not isinstance(data, dict) or data.get("version") != REGISTRY_VERSION:
            raise ProfileError(
                f"{source} is not a cluster record this ipcluster understands; remove it with ipcluster clean"
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def registry_path(profile: ProfileDir, cluster_id: str) -> Path:
    return profile.clusters_dir / f"{record_name(cluster_id)}.json"


def write_record(profile: ProfileDir, record: ClusterRecord) -> Path:
    """Write atomically (temp file + rename), so a reader never sees half a record."""
    path = registry_path(profile, record.cluster_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, record.to_json())


def read_record(profile: ProfileDir, cluster_id: str) -> ClusterRecord | None:
    """The record of ``cluster_id`` in this profile, or None when there is none."""
    return read_record_file(registry_path(profile, cluster_id))


def read_record_file(path: Path) -> ClusterRecord | None:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ProfileError(f"cluster record {path} is unreadable ({exc}); remove it with ipcluster clean")
    return ClusterRecord.from_dict(data, str(path))


def list_records(profile: ProfileDir) -> list[ClusterRecord]:
    """Every readable record in the profile (unreadable ones are skipped: ``ipcluster clean`` removes them)."""
    if not profile.clusters_dir.is_dir():
        return []
    found = []
    for path in sorted(profile.clusters_dir.glob("*.json")):
        try:
            rec = read_record_file(path)
        except ProfileError:
            continue
        if rec is not None:
            found.append(rec)
    return found


def remove_record(profile: ProfileDir, cluster_id: str) -> bool:
    try:
        registry_path(profile, cluster_id).unlink()
        return True
    except FileNotFoundError:
        return False
