"""Inspect and stop a cluster from its registry record alone, from any process (``ipcluster stop/list/clean``).

The record says which launchers started what; each launcher is rebuilt with ``from_dict`` and asked about the
real processes, so a record whose processes are dead is reported as stale and never trusted.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from ipcluster.error import IPClusterError
from ipcluster.profiles.config import Config
from ipcluster.profiles.dirs import ProfileDir
from ipcluster.profiles.registry import ClusterRecord, remove_record

from . import launcher_from_dict
from .base import LaunchContext, LauncherState
from .local import OtherHostError
from .process import pid_alive, wait_until


def cluster_state(record: ClusterRecord, config: Config | None = None) -> str:
    """``running``, ``unknown`` (a launcher that cannot tell) or ``stale`` (its controller is gone)."""
    ctx = LaunchContext(Path(record.profile_dir), record.cluster_id, config or Config())
    try:
        controller = launcher_from_dict(record.controller, ctx)
    except (IPClusterError, KeyError):
        return "stale"
    state = controller.poll()
    if state == LauncherState.RUNNING:
        return "running"
    return "unknown" if state == LauncherState.UNKNOWN else "stale"


def stop_record(profile: ProfileDir, record: ClusterRecord, config: Config) -> None:
    """Stop a cluster: ask its foreground owner (``ipcluster start``) first, then stop every launcher."""
    owner, started = record.owner_pid, record.owner_start_time
    if owner and owner != os.getpid() and pid_alive(owner, started):
        try:
            os.kill(owner, signal.SIGTERM)
        except ProcessLookupError:
            pass
        wait_until(lambda: not pid_alive(owner, started), config.cluster.stop_timeout + 10)
    clean_record(profile, record, config)


def clean_record(profile: ProfileDir, record: ClusterRecord, config: Config) -> None:
    """Stop whatever of a record's processes is left (they may be orphans) and remove its files."""
    ctx = LaunchContext(Path(record.profile_dir), record.cluster_id, config)
    for data in [*record.engines, record.controller]:
        try:
            launcher_from_dict(data, ctx).stop()
        except OtherHostError:
            raise  # keep the record: the cluster may well be running there
        except (IPClusterError, KeyError):
            continue
    remove_record(profile, record.cluster_id)
    if not config.controller.reuse:
        for role in ("client", "engine"):
            profile.connection_file(role, record.cluster_id).unlink(missing_ok=True)
