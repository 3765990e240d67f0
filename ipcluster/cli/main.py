"""``ipcluster``: start, stop, grow, list and clean clusters, and manage profiles.

Thin by design: each command parses its options, calls ``ipcluster.Cluster`` or the profile functions, and
prints. Anything a notebook user needs lives in the Python API, not here.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from ipcluster.cluster import Cluster, ClusterError, ClusterNotRunning, cluster_state, stop_record
from ipcluster.launchers.process import pid_alive
from ipcluster.profiles.dirs import ProfileDir, list_profiles
from ipcluster.profiles.registry import list_records, read_record
from ipcluster.wire.shm import stale_files

from .common import (
    EXIT_CODES_HELP,
    EXIT_NOT_RUNNING,
    EXIT_USAGE,
    Failure,
    config_option,
    format_uptime,
    load,
    merge,
    parse_settings,
    profile_options,
    translate_errors,
)
from .profile import profile_group
from .progress import EngineProgress


class _Stop(Exception):
    """Raised in the main thread by SIGTERM / SIGHUP so foreground mode stops everything like on Ctrl-C."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(package_name="ipcluster")
def cli() -> None:
    """Start and manage ipcluster clusters: a controller plus engines, on this machine or elsewhere."""


cli.add_command(profile_group)


@cli.command(epilog=EXIT_CODES_HELP, context_settings={"ignore_unknown_options": False})
@click.option(
    "-n",
    "--n",
    "n",
    type=click.IntRange(min=0),
    default=None,
    help="Number of engines [default: one per CPU].",
)
@profile_options
@click.option(
    "--launcher",
    "--engines",
    "launcher",
    default=None,
    help="Engine launcher: local, mpi, ... [default: local].",
)
@click.option(
    "--controller-launcher", "--controller", "controller_launcher", default=None, help="Controller launcher."
)
@click.option(
    "--hosts",
    default=None,
    metavar="HOST=N,...",
    help="SSH launcher hosts and engines per host, e.g. node1=4,me@node2:2222=2 (implies --launcher ssh).",
)
@click.option("--cluster-id", default=None, help="Name of this cluster, so several can run in one profile.")
@click.option("--ip", default=None, help="Address the controller binds (0.0.0.0 for engines on other hosts).")
@click.option("--location", default=None, help="Address peers connect to when --ip is a wildcard.")
@click.option(
    "--timeout",
    "engine_timeout",
    type=float,
    default=None,
    help="Seconds to wait for the engines (0: forever).",
)
@click.option(
    "--daemonize",
    "--daemon",
    is_flag=True,
    help="Return once the engines are up and leave the cluster running.",
)
@config_option
@click.argument("controller_args", nargs=-1, type=click.UNPROCESSED)
@translate_errors
def start(
    n: int | None,
    profile: str | None,
    profile_dir: str | None,
    launcher: str | None,
    controller_launcher: str | None,
    hosts: str | None,
    cluster_id: str | None,
    ip: str | None,
    location: str | None,
    engine_timeout: float | None,
    daemonize: bool,
    settings: tuple[str, ...],
    controller_args: tuple[str, ...],
) -> None:
    """Start a controller and N engines, and show them registering.

    In the foreground (the default) the cluster runs until Ctrl-C (or SIGTERM / SIGHUP, or `ipcluster stop`),
    then everything is stopped. With --daemonize the command returns once all engines are registered and the
    cluster keeps running until `ipcluster stop`. Arguments after `--` go to the controller.
    """
    launcher, host_table = _hosts_option(hosts, launcher)
    overrides = merge(
        parse_settings(settings),
        host_table,
        {
            "cluster": {"n": n, "launcher": launcher, "controller_launcher": controller_launcher,
                        "cluster_id": cluster_id, "engine_timeout": engine_timeout},
            "controller": {"ip": ip, "location": location},
        },
    )  # fmt: skip
    _create_missing_profile(profile, profile_dir)
    prof, config = load(profile, profile_dir, overrides)
    cluster = Cluster(profile_dir=prof.path, config=config, controller_args=controller_args,
                      foreground=not daemonize, shutdown_atexit=not daemonize)  # fmt: skip
    _install_stop_handlers()
    try:
        cluster.start_controller_sync()
        cluster.set_owner(None if daemonize else os.getpid(), daemonized=daemonize)
        cluster.start_engines_sync()
        _echo(f"controller started (profile {prof.name!r}, cluster {cluster.cluster_id or 'default'!r}); "
              f"waiting for {cluster.engine_count} engines ({config.cluster.launcher} launcher)")  # fmt: skip
        with EngineProgress(cluster.engine_count) as progress:
            cluster.wait_for_engines_sync(progress=progress.update)
    except (KeyboardInterrupt, _Stop):
        _stop_quietly(cluster)
        _echo("interrupted: cluster stopped")
        sys.exit(130)
    except BaseException:
        _stop_quietly(cluster)
        raise
    if daemonize:
        _echo(
            f"{cluster.engine_count} engines ready; stop the cluster with: ipcluster stop{_flags(prof, cluster.cluster_id)}"
        )
        return
    _echo(f"{cluster.engine_count} engines ready; press Ctrl-C to stop the cluster")
    _run_foreground(cluster)


def _create_missing_profile(profile: str | None, profile_dir: str | None) -> None:
    """``ipcluster start --profile mpi`` creates a missing profile, as IPython's ipcluster did, the same way
    ``ipcluster profile create mpi`` would (a profile named like a template gets that template). A name close
    to an existing profile's is taken for a typo and left to fail with the list of known profiles."""
    import difflib

    if profile is None or profile_dir is not None or ProfileDir.for_name(profile).exists():
        return
    if difflib.get_close_matches(profile, [p.name for p in list_profiles()], n=1, cutoff=0.7):
        return
    from ipcluster.profiles.manage import create_profile
    from ipcluster.profiles.templates import template_for

    prof = create_profile(profile)
    _echo(f"created profile {profile!r} at {prof.path} (template {template_for(profile, None)})")


def _run_foreground(cluster: Cluster) -> None:
    try:
        while True:
            cluster._check_controller()
            time.sleep(0.2)
    except (KeyboardInterrupt, _Stop):
        _stop_quietly(cluster)
        _echo("cluster stopped")
    except ClusterError:
        _stop_quietly(cluster)
        raise


def _install_stop_handlers() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise _Stop(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def _stop_quietly(cluster: Cluster) -> None:
    """Stop everything, ignoring further Ctrl-C / SIGTERM so cleanup is not cut short."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    cluster.stop_cluster_sync()


@cli.command(epilog=EXIT_CODES_HELP)
@profile_options
@click.option(
    "--cluster-id", default=None, help="Which cluster of the profile [default: [cluster] cluster_id]."
)
@click.option("--all", "all_", is_flag=True, help="Stop every cluster (of --profile, or of every profile).")
@translate_errors
def stop(profile: str | None, profile_dir: str | None, cluster_id: str | None, all_: bool) -> None:
    """Stop a running cluster: its engines, then its controller."""
    if all_ and cluster_id is not None:
        raise Failure(
            "--cluster-id and --all exclude each other: name one cluster, or stop them all", EXIT_USAGE
        )
    if all_:
        profiles = [load(profile, profile_dir, {})[0]] if (profile or profile_dir) else list_profiles()
        stopped = 0
        for prof in profiles:
            config = load(None, prof.path, {})[1]
            for record in list_records(prof):
                live = cluster_state(record, config) != "stale"
                stop_record(prof, record, config)
                stopped += live
                if live:
                    _echo(f"stopped cluster {record.cluster_id or 'default'!r} of profile {prof.name!r}")
        if not stopped:
            raise Failure("no cluster is running", EXIT_NOT_RUNNING)
        return
    prof, config = load(profile, profile_dir, {"cluster": {"cluster_id": cluster_id}})
    cluster_id = config.cluster.cluster_id
    record = read_record(prof, cluster_id)
    flags = _flags(prof, cluster_id)
    if record is None:
        raise Failure(f"no cluster {cluster_id or 'default'!r} is running in profile {prof.name!r} "
                      "(see: ipcluster list)", EXIT_NOT_RUNNING)  # fmt: skip
    if cluster_state(record, config) == "stale":
        stop_record(prof, record, config)
        raise Failure(f"cluster {cluster_id or 'default'!r} in profile {prof.name!r} was not running; "
                      f"removed its stale record (ipcluster start{flags} starts it)", EXIT_NOT_RUNNING)  # fmt: skip
    stop_record(prof, record, config)
    _echo(f"stopped cluster {cluster_id or 'default'!r} of profile {prof.name!r}")


@cli.command(epilog=EXIT_CODES_HELP)
@click.option("-n", "--n", "n", type=click.IntRange(min=1), required=True, help="How many engines to add.")
@profile_options
@click.option(
    "--cluster-id", default=None, help="Which cluster of the profile [default: [cluster] cluster_id]."
)
@click.option(
    "--launcher", "--engines", "launcher", default=None, help="Engine launcher [default: the cluster's]."
)
@click.option(
    "--hosts",
    default=None,
    metavar="HOST=N,...",
    help="SSH launcher hosts and engines per host, e.g. node1=4,me@node2:2222=2 (implies --launcher ssh).",
)
@click.option(
    "--timeout", "engine_timeout", type=float, default=None, help="Seconds to wait for them (0: forever)."
)
@click.option("--wait/--no-wait", default=True, help="Wait until the new engines registered [default: wait].")
@config_option
@translate_errors
def engines(
    n: int,
    profile: str | None,
    profile_dir: str | None,
    cluster_id: str | None,
    launcher: str | None,
    hosts: str | None,
    engine_timeout: float | None,
    wait: bool,
    settings: tuple[str, ...],
) -> None:
    """Add N engines to a running cluster."""
    launcher, host_table = _hosts_option(hosts, launcher)
    overrides = merge(
        parse_settings(settings),
        host_table,
        {"cluster": {"cluster_id": cluster_id, "engine_timeout": engine_timeout}},
    )
    prof, config = load(profile, profile_dir, overrides)
    record = read_record(prof, config.cluster.cluster_id)
    if record is not None:
        config.cluster.launcher = launcher or record.engine_launcher
        config.cluster.n = record.n
    cluster = Cluster(profile_dir=prof.path, config=config, shutdown_atexit=False)
    try:
        cluster._attach()
    except ClusterNotRunning as exc:
        raise Failure(str(exc), EXIT_NOT_RUNNING)
    cluster.start_engines_sync(n, launcher)
    total = cluster.engine_count
    _echo(
        f"started {n} more engines ({launcher or config.cluster.launcher} launcher); {total} requested in all"
    )
    if wait:
        with EngineProgress(total) as progress:
            cluster.wait_for_engines_sync(total, progress=progress.update)


@cli.command(name="list")
@profile_options
@click.option(
    "--json", "as_json", is_flag=True, help="Print JSON (one object per cluster) instead of a table."
)
@translate_errors
def list_clusters(profile: str | None, profile_dir: str | None, as_json: bool) -> None:
    """List clusters: profile, cluster id, controller state, engines registered/requested, launcher, uptime."""
    profiles = [load(profile, profile_dir, {})[0]] if (profile or profile_dir) else list_profiles()
    rows = []
    for prof in profiles:
        config = load(None, prof.path, {})[1]
        for record in list_records(prof):
            state = cluster_state(record, config)
            registered = None
            if state == "running":
                probe = Cluster(profile_dir=prof.path, cluster_id=record.cluster_id, shutdown_atexit=False)
                registered = probe.registered_engines(timeout=1.0)
            rows.append({
                "profile": prof.name, "profile_dir": str(prof.path), "cluster_id": record.cluster_id,
                "state": state, "engines_registered": registered, "engines_requested": record.engine_count,
                "launcher": record.engine_launcher, "controller_launcher": record.controller_launcher,
                "uptime": round(time.time() - record.created, 1), "daemonized": record.daemonized,
            })  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        _echo("no clusters (start one with: ipcluster start)")
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("profile", "cluster id", "controller", "engines", "launcher", "uptime", box=None)
    for r in rows:
        reg = "?" if r["engines_registered"] is None else str(r["engines_registered"])
        table.add_row(r["profile"], r["cluster_id"] or "default", r["state"], f"{reg}/{r['engines_requested']}",
                      r["launcher"], format_uptime(r["uptime"]))  # fmt: skip
    Console(width=200).print(table)


@cli.command()
@profile_options
@translate_errors
def clean(profile: str | None, profile_dir: str | None) -> None:
    """Remove what dead clusters left: stale registry records (stopping orphans) and connection files."""
    profiles = [load(profile, profile_dir, {})[0]] if (profile or profile_dir) else list_profiles()
    removed = 0
    for prof in profiles:
        config = load(None, prof.path, {})[1]
        live_ids = set()
        for record in list_records(prof):
            if cluster_state(record, config) == "stale":
                stop_record(prof, record, config)
                removed += 1
                _echo(f"removed stale cluster {record.cluster_id or 'default'!r} of profile {prof.name!r}")
            else:
                live_ids.add(record.cluster_id)
        removed += _clean_unreadable_records(prof) + _clean_connection_files(prof, live_ids)
    removed += _clean_shared_memory()
    _echo(f"cleaned {removed} stale item(s)" if removed else "nothing to clean")


def _clean_shared_memory() -> int:
    """Buffer and engine-probe files in the shared-memory directory whose process was killed."""
    count = 0
    for path in stale_files():
        try:
            if path.stat().st_uid != os.getuid():
                continue
            path.unlink()
        except OSError:
            continue
        _echo(f"removed stale shared-memory file {path}")
        count += 1
    return count


def _clean_unreadable_records(prof: ProfileDir) -> int:
    count = 0
    for path in prof.clusters_dir.glob("*.json") if prof.clusters_dir.is_dir() else []:
        try:
            json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            _echo(f"removed unreadable record {path}")
            count += 1
    return count


def _clean_connection_files(prof: ProfileDir, live_ids: set[str]) -> int:
    count = 0
    for path in sorted(prof.security_dir.glob("ipcontroller-*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            info = {}
        if info.get("cluster_id", "") in live_ids or pid_alive(info.get("controller_pid")):
            continue
        path.unlink(missing_ok=True)
        _echo(f"removed stale connection file {path}")
        count += 1
    return count


def _hosts_option(hosts: str | None, launcher: str | None) -> tuple[str | None, dict[str, dict[str, Any]]]:
    """``--hosts node1=4,node2`` → the ssh launcher (unless another was named) and its engines table."""
    if not hosts:
        return launcher, {}
    from ipcluster.launchers.ssh import parse_hosts

    return launcher or "ssh", {"launcher.ssh": {"engines": parse_hosts(hosts)}}


def _flags(prof: ProfileDir, cluster_id: str) -> str:
    if prof.path.parent == _default_base() and prof.path.name == f"profile_{prof.name}":
        flags = "" if prof.name == "default" else f" --profile {prof.name}"
    else:
        flags = f" --profile-dir {prof.path}"
    return flags + (f" --cluster-id {cluster_id}" if cluster_id else "")


def _default_base() -> Path:
    from ipcluster.profiles.dirs import base_dir

    return base_dir()


def _echo(message: str) -> None:
    click.echo(message)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``ipcluster``) and ``python -m ipcluster``."""
    cli.main(args=argv, prog_name="ipcluster")


if __name__ == "__main__":
    main()
