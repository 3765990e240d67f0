"""Cluster: start a controller and engines with launchers, from Python or from ``ipcluster start``.

The same object serves a script, a notebook and the CLI::

    with ipcluster.Cluster(n=4) as rc:          # starts, waits for 4 engines, yields a connected Client
        rc[:].apply_sync(os.getpid)

    async with ipcluster.Cluster(n=4) as rc:    # the same under asyncio
        ...

    cluster = ipcluster.Cluster(n=4, profile="mpi")
    cluster.start(); cluster.wait_for_engines(); rc = cluster.connect_client(); cluster.stop()

The ipyparallel names work too: ``start_cluster`` / ``stop_cluster`` / ``start_engines`` ... are coroutines,
each with a blocking ``..._sync`` twin; ``start``, ``stop`` and ``wait_for_engines`` block when called
outside an event loop and return an awaitable inside one. What was started is recorded in the profile's
cluster registry, so ``Cluster.from_file()`` (or ``ipcluster stop``) can find it from another process.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ipcluster.error import ConnectionFileError, IPClusterError
from ipcluster.launchers import LaunchContext, Launcher, LauncherState, find_launcher, launcher_from_dict
from ipcluster.launchers.probe import ControllerProbe
from ipcluster.launchers.process import proc_start_time, wait_until
from ipcluster.launchers.records import clean_record, cluster_state, stop_record
from ipcluster.profiles.config import Config
from ipcluster.profiles.dirs import ProfileDir
from ipcluster.profiles.manage import create_profile, open_profile, profile_config
from ipcluster.profiles.registry import (
    ClusterRecord,
    read_record,
    read_record_file,
    remove_record,
    write_record,
)

ProgressCallback = Callable[[int, int], None]


class ClusterError(IPClusterError):
    """Starting, finding or stopping a cluster failed; the message says what to do."""

    exit_code = 1


class ClusterAlreadyRunning(ClusterError):
    exit_code = 3


class ClusterNotRunning(ClusterError):
    exit_code = 4


class ControllerFailed(ClusterError):
    """The controller exited or never wrote its connection files; the message ends with its log's tail."""


class EnginesTimeout(ClusterError):
    """Fewer engines than asked for registered in time; the message names the launcher and its logs."""


def log_tail(path: Path | None, lines: int = 15) -> str:
    if path is None:
        return ""
    try:
        text = Path(path).read_text(errors="replace").rstrip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


class Cluster:
    """A controller plus engine sets, started by launchers and recorded in the profile's registry.

    Keyword arguments override the profile's ``ipcluster.toml`` (``config`` takes any ``{section: {key: value}}``);
    ``engines`` and ``controller`` are ipyparallel's names for ``launcher`` and ``controller_launcher``.
    ``foreground`` ties the processes' lives to this process (the CLI's foreground mode); ``shutdown_atexit``
    stops the cluster when this interpreter exits.
    """

    def __init__(
        self,
        n: int | None = None,
        profile: str | None = None,
        profile_dir: str | os.PathLike[str] | None = None,
        cluster_id: str | None = None,
        launcher: str | None = None,
        controller_launcher: str | None = None,
        controller_ip: str | None = None,
        controller_location: str | None = None,
        controller_args: Sequence[str] = (),
        engine_args: Sequence[str] = (),
        engine_timeout: float | None = None,
        config: dict[str, dict[str, Any]] | Config | None = None,
        foreground: bool = False,
        shutdown_atexit: bool = True,
        engines: str | None = None,
        controller: str | None = None,
    ) -> None:
        if profile and profile_dir is None and not ProfileDir.for_name(profile).exists():
            # as ipyparallel's Cluster does; a profile named like a template gets that template
            create_profile(profile)
        self.profile = open_profile(profile, profile_dir)
        if isinstance(config, Config):
            self.config = config
        else:
            overrides: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (config or {}).items()}
            cluster = overrides.setdefault("cluster", {})
            for key, value in (
                ("n", n), ("cluster_id", cluster_id), ("launcher", launcher or engines),
                ("controller_launcher", controller_launcher or controller), ("engine_timeout", engine_timeout),
            ):  # fmt: skip
                if value is not None:
                    cluster[key] = value
            ctl = overrides.setdefault("controller", {})
            if controller_ip is not None:
                ctl["ip"] = controller_ip
            if controller_location is not None:
                ctl["location"] = controller_location
            self.config = profile_config(self.profile, overrides)
        self.cluster_id = self.config.cluster.cluster_id
        self.controller_args = list(controller_args)
        self.engine_args = list(engine_args)
        self.foreground = foreground
        self.shutdown_atexit = shutdown_atexit
        self.controller: Launcher | None = None
        self.engine_sets: list[Launcher] = []
        self.record: ClusterRecord | None = None
        self._atexit_registered = False

    def __repr__(self) -> str:
        state = "running" if self.controller and self.controller.running else "stopped"
        return f"<Cluster(cluster_id={self.cluster_id!r}, profile={self.profile.name!r}, {state})>"

    # -- properties ------------------------------------------------------------------------------

    @property
    def n(self) -> int:
        return self.config.cluster.n if self.config.cluster.n is not None else (os.cpu_count() or 1)

    @property
    def engine_count(self) -> int:
        """Engines asked for so far (not necessarily registered: see ``registered_engines()``)."""
        return sum(ls.engine_count for ls in self.engine_sets)

    @property
    def context(self) -> LaunchContext:
        return LaunchContext(self.profile.path, self.cluster_id, self.config, foreground=self.foreground)

    def connection_file(self, role: str = "client") -> Path:
        return self.profile.connection_file(role, self.cluster_id)

    # -- starting --------------------------------------------------------------------------------

    def start_controller_sync(self) -> None:
        """Start the controller and wait until it has written its connection files."""
        cls = find_launcher(self.config.cluster.controller_launcher, "controller")
        ctx = self.context
        ctx.log_dir.mkdir(parents=True, exist_ok=True)
        with self._start_lock():  # two concurrent starts: the second sees the first's record and refuses
            self._refuse_if_running()
            if not self.config.controller.reuse:
                for role in ("client", "engine"):
                    self.connection_file(role).unlink(missing_ok=True)
            self.controller = cls(ctx, n=1, extra_args=self.controller_args)
            started = time.time()
            self.controller.start()
            self._save_record()
        if self.shutdown_atexit and not self._atexit_registered:
            atexit.register(self._stop_at_exit)
            self._atexit_registered = True
        self._wait_for_connection_files(started)

    def start_engines_sync(self, n: int | None = None, launcher: str | None = None) -> Launcher:
        """Start ``n`` more engines (default: ``n`` of the cluster) with the engine launcher."""
        if self.controller is None:
            self._attach()
        n = self.n if n is None else n
        cls = find_launcher(launcher or self.config.cluster.launcher, "engines")
        engines = cls(self.context, n=n, extra_args=self.engine_args, first_index=self._next_engine_index())
        engines.start()
        self.engine_sets.append(engines)
        self._save_record()
        return engines

    def start_cluster_sync(self, n: int | None = None) -> None:
        """Start the controller, then ``n`` engines; returns without waiting for them to register."""
        self.start_controller_sync()
        try:
            self.start_engines_sync(n)
        except BaseException:
            self.stop_cluster_sync()
            raise

    def wait_for_engines_sync(
        self,
        n: int | None = None,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
        interval: float = 0.1,
    ) -> int:
        """Wait until ``n`` engines (default: all requested) have registered; returns how many did.

        Asks the controller itself (a ``connection_request``), so no Client is needed. Raises EnginesTimeout
        naming the launcher and its logs, or ControllerFailed if the controller dies meanwhile.
        """
        want = self.engine_count if n is None else n
        timeout = self.config.cluster.engine_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout if timeout else None
        count = -1
        with ControllerProbe(self.connection_file("client")) as probe:
            while True:
                current = probe.engine_count(timeout=1.0)
                if current is not None and current != count:
                    count = current
                    if progress:
                        progress(count, want)
                if count >= want:
                    return count
                self._check_controller()
                if self.engine_sets and all(s.poll() == LauncherState.STOPPED for s in self.engine_sets):
                    raise EnginesTimeout(
                        self._engines_failed_message(max(count, 0), want, "every engine exited")
                    )
                if deadline is not None and time.monotonic() > deadline:
                    raise EnginesTimeout(
                        self._engines_failed_message(
                            max(count, 0), want, f"not registered after {timeout:g} s"
                        )
                    )
                time.sleep(interval)

    def registered_engines(self, timeout: float = 2.0) -> int | None:
        """How many engines the controller has now, or None if it does not answer."""
        try:
            with ControllerProbe(self.connection_file("client")) as probe:
                return probe.engine_count(timeout=timeout)
        except ConnectionFileError:
            return None

    def start_and_connect_sync(self, n: int | None = None, activate: bool = False) -> Any:
        self.start_cluster_sync(n)
        try:
            self.wait_for_engines_sync()
            return self.connect_client(activate=activate)
        except BaseException:
            self.stop_cluster_sync()
            raise

    def connect_client(self, activate: bool = False, **client_kwargs: Any) -> Any:
        """A Client connected to this cluster (``ipcluster.client.Client``)."""
        from ipcluster.client import Client

        client_kwargs.setdefault("profile_dir", str(self.profile.path))
        client_kwargs.setdefault("cluster_id", self.cluster_id)
        rc = Client(**client_kwargs)
        if activate and hasattr(rc, "activate"):
            rc.activate()
        return rc

    connect_client_sync = connect_client

    # -- stopping --------------------------------------------------------------------------------

    def stop_engines_sync(self) -> None:
        """Stop every engine set of this cluster, also sets another process added (``ipcluster engines``).

        Does nothing for a Cluster that neither started nor attached to a controller.
        """
        if self.controller is None and not self.engine_sets:
            return
        if self.controller is not None:
            self._merge_engine_sets_from_record()
        for engines in self.engine_sets:
            engines.stop()
        self.engine_sets = []
        if self.controller is not None:
            self._save_record(keep_others=False)

    def stop_controller_sync(self) -> None:
        """Stop the controller this Cluster started or attached to, and remove its record and files."""
        if self.controller is None:
            return
        self.controller.stop()
        self.controller = None
        remove_record(self.profile, self.cluster_id)
        if not self.config.controller.reuse:
            for role in ("client", "engine"):
                self.connection_file(role).unlink(missing_ok=True)

    def stop_cluster_sync(self) -> None:
        """Stop the engines, then the controller, and remove the registry entry."""
        try:
            self.stop_engines_sync()
        finally:
            self.stop_controller_sync()

    def signal_engines_sync(self, sig: int) -> None:
        """Send ``sig`` (e.g. SIGINT to interrupt running code) to every engine this cluster started."""
        for engines in self.engine_sets:
            engines.signal(sig)

    def signal_controller_sync(self, sig: int) -> None:
        if self.controller is not None:
            self.controller.signal(sig)

    async def signal_engines(self, sig: int) -> None:
        await asyncio.to_thread(self.signal_engines_sync, sig)

    def _stop_at_exit(self) -> None:
        if self.controller is not None and self.shutdown_atexit:
            self.stop_cluster_sync()

    # -- re-attaching ----------------------------------------------------------------------------

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str] | None = None,
        profile: str | None = None,
        profile_dir: str | os.PathLike[str] | None = None,
        cluster_id: str = "",
        **kwargs: Any,
    ) -> Cluster:
        """Attach to a running cluster from its registry file (or profile + cluster id).

        The returned Cluster does not stop it at exit unless ``shutdown_atexit=True`` is passed.
        """
        if path is not None:
            record = read_record_file(Path(path))
            if record is None:
                raise ClusterNotRunning(f"no cluster record at {path}")
            profile_dir, cluster_id = record.profile_dir, record.cluster_id
        kwargs.setdefault("shutdown_atexit", False)
        cluster = cls(profile=profile, profile_dir=profile_dir, cluster_id=cluster_id, **kwargs)
        cluster._attach()
        return cluster

    def _attach(self) -> None:
        record = read_record(self.profile, self.cluster_id)
        if record is None:
            raise ClusterNotRunning(
                f"no cluster {self._label()}; start one with: ipcluster start{self._flags()}"
            )
        controller = launcher_from_dict(record.controller, self.context)
        if controller.poll() == LauncherState.STOPPED:
            raise ClusterNotRunning(
                f"cluster {self._name()} is stale (its controller is gone); clean up with: ipcluster clean{self._flags()}"
            )
        self.controller = controller
        self.record = record
        self.engine_sets = [launcher_from_dict(d, self.context) for d in record.engines]

    def _merge_engine_sets_from_record(self) -> None:
        record = read_record(self.profile, self.cluster_id)
        if record is None:
            return
        mine = {_state_key(s.to_dict()) for s in self.engine_sets}
        for data in record.engines:
            if _state_key(data) not in mine:
                self.engine_sets.append(launcher_from_dict(data, self.context))

    # -- helpers ---------------------------------------------------------------------------------

    def _label(self) -> str:
        return f"{self.cluster_id or 'default'!r} is running in profile {self.profile.name!r}"

    def _name(self) -> str:
        return f"{self.cluster_id or 'default'!r} of profile {self.profile.name!r}"

    def _flags(self) -> str:
        flags = f" --profile-dir {self.profile.path}" if self.profile.name != "default" else ""
        return flags + (f" --cluster-id {self.cluster_id}" if self.cluster_id else "")

    @contextlib.contextmanager
    def _start_lock(self) -> Iterator[None]:
        """An exclusive lock on ``clusters/.<name>.lock`` while checking for and recording a cluster."""
        self.profile.clusters_dir.mkdir(parents=True, exist_ok=True)
        path = self.profile.clusters_dir / f".{self.cluster_id or 'default'}.lock"
        with open(path, "a") as fh:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - Windows
                yield
                return
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _refuse_if_running(self) -> None:
        record = read_record(self.profile, self.cluster_id)
        if record is None:
            return
        if cluster_state(record, self.config) != "stale":
            raise ClusterAlreadyRunning(
                f"cluster {self._name()} is already running{_pids(record.controller)}; "
                f"stop it with: ipcluster stop{self._flags()}, or pick another --cluster-id"
            )
        clean_record(self.profile, record, self.config)

    def _save_record(self, keep_others: bool = True) -> None:
        record = self.record or ClusterRecord(
            cluster_id=self.cluster_id, profile=self.profile.name, profile_dir=str(self.profile.path)
        )
        record.n = self.n
        record.engine_launcher = self.config.cluster.launcher
        record.controller_launcher = self.config.cluster.controller_launcher
        if self.controller is not None:
            record.controller = self.controller.to_dict()
        mine = [s.to_dict() for s in self.engine_sets]
        fresh = read_record(self.profile, self.cluster_id) if keep_others else None
        keys = {_state_key(m) for m in mine}
        theirs = [d for d in (fresh.engines if fresh else []) if _state_key(d) not in keys]
        record.engines = theirs + mine
        self.record = record
        write_record(self.profile, record)

    def set_owner(self, pid: int | None, daemonized: bool) -> None:
        """Record which process stops this cluster on exit (the foreground CLI), so ``ipcluster stop`` can ask it."""
        if self.record is None:
            self._save_record()
        assert self.record is not None
        self.record.owner_pid = pid
        self.record.owner_start_time = proc_start_time(pid) if pid else None
        self.record.daemonized = daemonized
        write_record(self.profile, self.record)

    def _next_engine_index(self) -> int:
        record = read_record(self.profile, self.cluster_id)
        base = record.engine_count if record else 0
        return max(base, self.engine_count)

    def _wait_for_connection_files(self, started: float) -> None:
        files = [self.connection_file("client"), self.connection_file("engine")]
        timeout = self.config.cluster.controller_timeout
        assert self.controller is not None

        def ready() -> bool:
            self._check_controller()
            return all(f.exists() and f.stat().st_mtime >= started - 1 for f in files)

        try:
            ok = wait_until(ready, timeout)
        except ControllerFailed:
            self.stop_cluster_sync()
            raise
        if not ok:
            tail = log_tail(self._controller_log())
            self.stop_cluster_sync()
            raise ControllerFailed(
                f"the controller wrote no connection files within {timeout:g} s "
                f"(log: {self._controller_log()})" + (f"; its log ends with:\n{tail}" if tail else "")
            )

    def _controller_log(self) -> Path | None:
        paths = self.controller.log_paths if self.controller else []
        return paths[0] if paths else None

    def _check_controller(self) -> None:
        if self.controller is not None and self.controller.poll() == LauncherState.STOPPED:
            log = self._controller_log()
            tail = log_tail(log)
            code = getattr(self.controller, "returncode", None)
            status = f" with status {code}" if code is not None else ""
            raise ControllerFailed(
                f"the controller exited{status} (log: {log})"
                + (f"; its log ends with:\n{tail}" if tail else "")
            )

    def _engines_failed_message(self, count: int, want: int, why: str) -> str:
        where = "; ".join(s.describe() for s in self.engine_sets) or "no engine launcher"
        tail = ""
        logs = [p for s in self.engine_sets for p in s.log_paths]
        if logs:
            last = log_tail(logs[0], 8)
            tail = f"; {logs[0]} ends with:\n{last}" if last else ""
        return f"{count} of {want} engines registered, {why}: see {where}{tail}"

    # -- dual sync/async entry points and ipyparallel-compatible coroutines ----------------------

    def start(self, n: int | None = None) -> Any:
        """Start controller and engines: blocks in a script, returns an awaitable inside an event loop."""
        return _dual(self.start_cluster_sync, n)

    def stop(self) -> Any:
        return _dual(self.stop_cluster_sync)

    def wait_for_engines(self, n: int | None = None, timeout: float | None = None, **kwargs: Any) -> Any:
        return _dual(self.wait_for_engines_sync, n, timeout, **kwargs)

    async def start_controller(self) -> None:
        await asyncio.to_thread(self.start_controller_sync)

    async def start_engines(self, n: int | None = None) -> Launcher:
        return await asyncio.to_thread(self.start_engines_sync, n)

    async def start_cluster(self, n: int | None = None) -> None:
        await asyncio.to_thread(self.start_cluster_sync, n)

    async def stop_engines(self) -> None:
        await asyncio.to_thread(self.stop_engines_sync)

    async def stop_controller(self) -> None:
        await asyncio.to_thread(self.stop_controller_sync)

    async def stop_cluster(self) -> None:
        await asyncio.to_thread(self.stop_cluster_sync)

    async def start_and_connect(self, n: int | None = None, activate: bool = False) -> Any:
        return await asyncio.to_thread(self.start_and_connect_sync, n, activate)

    def __enter__(self) -> Any:
        self._client = self.start_and_connect_sync()
        return self._client

    def __exit__(self, *exc: Any) -> None:
        client, self._client = getattr(self, "_client", None), None
        try:
            if client is not None and hasattr(client, "close"):
                client.close()
        finally:
            self.stop_cluster_sync()

    async def __aenter__(self) -> Any:
        self._client = await self.start_and_connect()
        return self._client

    async def __aexit__(self, *exc: Any) -> None:
        await asyncio.to_thread(self.__exit__, *exc)


def _pids(launcher_dict: dict[str, Any]) -> str:
    pids = [str(p.get("pid")) for p in (launcher_dict.get("state") or {}).get("processes", [])]
    return f" (controller pid {', '.join(pids)})" if pids else ""


def _state_key(data: dict[str, Any]) -> str:
    """What identifies an engine set in the registry: what its launcher started."""
    return json.dumps(data.get("state"), sort_keys=True)


def _dual(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args, **kwargs)
    return asyncio.to_thread(fn, *args, **kwargs)


__all__ = [
    "Cluster",
    "ClusterManager",
    "ClusterAlreadyRunning",
    "ClusterError",
    "ClusterNotRunning",
    "ControllerFailed",
    "EnginesTimeout",
    "cluster_state",
    "clean_record",
    "stop_record",
]


class ClusterManager:
    """ipyparallel's ClusterManager: the clusters recorded in one profile, or in every profile.

    Keys are ``"<profile>:<cluster_id or 'default'>"``.
    """

    def __init__(self, profile: str | None = None, profile_dir: str | os.PathLike[str] | None = None) -> None:
        self.profile = profile
        self.profile_dir = profile_dir
        self.clusters: dict[str, Cluster] = {}

    def _profiles(self) -> list[Any]:
        from ipcluster.profiles.dirs import list_profiles

        if self.profile or self.profile_dir:
            return [open_profile(self.profile, self.profile_dir)]
        return list_profiles()

    def load_clusters(self) -> dict[str, Cluster]:
        """Attach to every running cluster (stale records are skipped; ``ipcluster clean`` removes them)."""
        from ipcluster.profiles.registry import list_records

        found: dict[str, Cluster] = {}
        for prof in self._profiles():
            for record in list_records(prof):
                try:
                    cluster = Cluster.from_file(profile_dir=prof.path, cluster_id=record.cluster_id)
                except ClusterNotRunning:
                    continue
                found[f"{prof.name}:{record.cluster_id or 'default'}"] = cluster
        self.clusters = found
        return found

    def list_clusters(self) -> list[str]:
        return sorted(self.load_clusters())

    def get_cluster(self, key: str) -> Cluster:
        if key not in self.clusters:
            self.load_clusters()
        try:
            return self.clusters[key]
        except KeyError:
            raise ClusterNotRunning(
                f"no running cluster {key!r}; running: {', '.join(self.clusters) or 'none'}"
            )

    def new_cluster(self, **kwargs: Any) -> Cluster:
        kwargs.setdefault("profile", self.profile)
        kwargs.setdefault("profile_dir", self.profile_dir)
        cluster = Cluster(**kwargs)
        self.clusters[f"{cluster.profile.name}:{cluster.cluster_id or 'default'}"] = cluster
        return cluster

    def remove_cluster(self, key: str) -> None:
        self.get_cluster(key).stop_cluster_sync()
        self.clusters.pop(key, None)
