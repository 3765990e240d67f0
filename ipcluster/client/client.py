"""Client: the connection to a controller, the engines' ids, views, and the hub and control requests.

All network I/O happens on one background thread (``ClientIO``); the methods here build and sign messages
in the caller's thread and wait on futures, so the blocking API works the same in scripts, threads and
notebooks. See docs/client.md for the user guide and docs/protocol.md for the messages.
"""

from __future__ import annotations

import atexit
import itertools
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import zmq

from ipcluster import error, wire
from ipcluster.wire.shm import DEFAULT_THRESHOLD as SHM_THRESHOLD
from ipcluster.wire.shm import ShmExporter, advertise_client, withdraw

from . import io as clientio
from .asyncresult import AsyncResult, add_remote_traceback
from .compat import CompatMixin
from .connect import channel_urls, choose_ssh_server, load_connection_info, tunnel_urls
from .control import ControlMixin
from .directview import DirectView
from .lbview import LoadBalancedView
from .metadata import Metadata
from .results import ResultsView
from .retention import History, Retention
from .routing import ReplyRouter
from .sending import RequestSender

_LIVE_CLIENTS: weakref.WeakSet[Client] = weakref.WeakSet()


def _cluster_attr(cluster: Any, name: str) -> Any:
    value = getattr(cluster, name, None)
    if value is None and name == "profile_dir":
        profile = getattr(cluster, "profile", None)
        value = getattr(profile, "path", None)
    return str(value) if value is not None else None


def _close_all() -> None:
    for client in list(_LIVE_CLIENTS):
        try:
            client.close()
        except Exception:
            pass


atexit.register(_close_all)


class Client(RequestSender, ControlMixin, CompatMixin, ReplyRouter):
    """A connection to an ipcluster controller, seed- and ipyparallel-compatible.

    ``Client()`` reads the default profile's ``security/ipcontroller-client.json``; pass a profile name,
    a profile directory, a connection file path or the file's dict instead. ``timeout`` (s) bounds the wait
    for the connection file and for the controller's answer. ``max_results`` bounds what ``results`` and
    ``metadata`` keep of tasks whose AsyncResult is gone (the most recent ones stay; None keeps all).
    Buffers of at least ``shm_threshold`` bytes (default 1 MiB) sent to engines on this host go through
    shared memory instead of the sockets; 0 sends everything through the sockets.
    """

    block: bool = False

    def __init__(
        self,
        url_file: Any = None,
        profile: str | None = None,
        profile_dir: str | None = None,
        ipython_dir: str | None = None,
        context: zmq.Context | None = None,
        debug: bool = False,
        sshserver: str | None = None,
        sshkey: str | None = None,
        password: str | None = None,
        paramiko: bool | None = None,
        timeout: float = 10,
        cluster_id: str | None = None,
        max_results: int | None = 10_000,
        shm_threshold: int = SHM_THRESHOLD,
        **extra_args: Any,
    ) -> None:
        self._closed = True
        for alias in ("url_or_file", "connection_info"):  # the seed's and ipyparallel's names
            value = extra_args.pop(alias, None)
            if url_file is None:
                url_file = value
        cluster = extra_args.pop("cluster", None)
        if cluster is not None:  # ipyparallel passes the Cluster that started the controller
            profile_dir = profile_dir or _cluster_attr(cluster, "profile_dir")
            cluster_id = cluster_id or _cluster_attr(cluster, "cluster_id")
        exec_key = extra_args.pop("exec_key", None)
        exec_key = extra_args.pop("key", None) or exec_key
        username = extra_args.pop("username", None)
        ssh_options = dict(extra_args.pop("ssh_options", None) or {})
        for ignored in ("config", "packer", "unpacker", "keyfile"):
            extra_args.pop(ignored, None)  # the seed's Session options: ipcluster's session needs none
        if extra_args:
            warnings.warn(
                f"Client ignores unknown arguments: {', '.join(sorted(extra_args))}",
                UserWarning,
                stacklevel=2,
            )
        info, source = load_connection_info(url_file, profile, profile_dir, ipython_dir, cluster_id, timeout)
        key = info.get("key") or ""
        if exec_key:
            if key:
                warnings.warn(
                    "exec_key is ignored: the connection file carries the key", UserWarning, stacklevel=2
                )
            else:
                key = exec_key
        self.profile = profile or "default"
        self.debug = debug
        self.connection_info = info
        self._source = source
        self._timeout = float(timeout)
        self.session = wire.Session(
            key=key, signature_scheme=info.get("signature_scheme", "hmac-sha256"), username=username
        )
        self._ids = itertools.count(1)
        self._msg_prefix = f"{self.session.session}-"  # msg ids: the random session id and a counter
        self._shm = ShmExporter(self.session.session[:12], shm_threshold)
        # engines on this host may answer big results through shared memory
        self._shm_probe = advertise_client(self.session.session, shm_threshold) if self._shm.enabled else None
        urls = channel_urls(info)
        server = choose_ssh_server(info, sshserver, sshkey)
        self._ssh_server = server
        if server:
            urls = tunnel_urls(urls, server, sshkey, password, ssh_options)
        self._urls = urls
        # state shared with the IO thread (plain dict/set operations are atomic under the GIL)
        self.history: History = History(self._msg_prefix)
        self.outstanding: set[str] = set()
        self.metadata: dict[str, Metadata] = {}
        self._replies: dict[str, dict[str, Any]] = {}
        self.results = ResultsView(self)
        self._retention = Retention(max_results, (self.metadata, self._replies, self.results._cache))
        self._pending: dict[str, tuple[AsyncResult, int]] = {}
        self._held: dict[str, float] = {}
        self._iopub_seen: dict[str, int] = {}
        self._queries: dict[str, Future] = {}
        self._engines: dict[int, str] = {}
        self._engines_cond = threading.Condition()
        self._hub_shutdown = False
        self._task_scheme = info.get("task_scheme", "leastload")
        self._own_context = context is None
        self._context = context or zmq.Context()
        self._io = clientio.ClientIO(
            self._context,
            self.session,
            urls,
            self._on_reply,
            self._on_query_reply,
            self._on_iopub,
            self._on_notification,
            self._on_tick,
        )
        self._apply_debug()
        try:
            self._io.start_and_wait(timeout=max(5.0, self._timeout))
            self._closed = False
            _LIVE_CLIENTS.add(self)
            self._connect()
            # outputs of the first tasks are only seen once iopub is subscribed: give it a moment
            self._io.iopub_ready.wait(min(self._timeout, 2.0))
        except BaseException:
            self.close()
            raise

    # -- connecting ----------------------------------------------------------------------------------

    def _connect(self) -> None:
        try:
            content = self._query("connection_request", {}, timeout=self._timeout)["content"]
        except error.TimeoutError:
            raise error.TimeoutError(
                f"Hub connection request timed out after {self._timeout:g} s: no controller answered at "
                f"{self._urls['registration']} (from {self._source}). Is it running? Start it with "
                "`ipcluster start`, or pass the right profile / cluster_id / connection file"
            ) from None
        if content.get("status") != "ok":
            raise error.IPClusterError(
                f"Failed to connect! The controller said: {content.get('evalue', content)}"
            )
        with self._engines_cond:
            for eid, uuid in (content.get("engines") or {}).items():
                self._engines[int(eid)] = uuid
            self._engines_cond.notify_all()
        self._task_scheme = content.get("task_scheme", self._task_scheme)

    # -- engines and targets -------------------------------------------------------------------------

    @property
    def ids(self) -> list[int]:
        """The ids of the engines registered now."""
        with self._engines_cond:
            return sorted(self._engines)

    def __len__(self) -> int:
        return len(self._engines)

    def _build_targets(self, targets: Any) -> tuple[list[bytes], list[int]]:
        """(engine idents, engine ids) for targets given as None/'all', an int, a slice, a list or range."""
        with self._engines_cond:
            engines = dict(self._engines)
        ids = sorted(engines)
        if not ids:
            raise error.NoEnginesRegistered("Can't build targets without any engines")
        if targets is None or (isinstance(targets, str) and targets == "all"):
            chosen = ids
        elif isinstance(targets, str):
            raise TypeError(f"targets must be an engine id, a list of ids, a slice or 'all', not {targets!r}")
        elif isinstance(targets, int):
            if targets < 0:
                targets = ids[targets]
            chosen = [targets]
        elif isinstance(targets, slice):
            chosen = ids[targets]
        elif isinstance(targets, (list, tuple, range, set)):
            chosen = list(targets)
        else:
            raise TypeError(
                f"targets must be an engine id, a list of ids, a slice or 'all', not {type(targets).__name__}"
            )
        for eid in chosen:
            if not isinstance(eid, int):
                raise TypeError(f"engine ids are ints, not {eid!r}")
            if eid not in engines:
                raise IndexError(f"No such engine: {eid} (engines: {ids})")
        return [engines[eid].encode("ascii") for eid in chosen], chosen

    def wait_for_engines(self, n: int | None = None, timeout: float = -1, block: bool = True) -> Any:
        """Wait until at least ``n`` engines are registered (TimeoutError after ``timeout`` s).

        With ``block=False`` returns a concurrent.futures.Future that resolves when they are.
        """
        if not block:
            future: Future = Future()

            def waiter() -> None:
                try:
                    self.wait_for_engines(n, timeout, block=True)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(None)

            threading.Thread(target=waiter, daemon=True, name="ipcluster-wait-engines").start()
            return future
        n = 1 if n is None else n
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        with self._engines_cond:
            while len(self._engines) < n:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise error.TimeoutError(
                        f"{len(self._engines)} engines registered after {timeout} s, waiting for {n}: "
                        "check the engine logs in the profile's log directory"
                    )
                if self._hub_shutdown:
                    raise error.EngineError("the controller shut down while waiting for engines")
                self._engines_cond.wait(left if left is not None else 1.0)
        return None

    def executor(self, targets: Any = None) -> Any:
        """A concurrent.futures.Executor sending tasks to a load-balanced view."""
        return self.load_balanced_view(targets).executor

    def __getitem__(self, key: Any) -> DirectView:
        if not isinstance(key, (int, slice, tuple, list, range)):
            raise TypeError(f"key by int, slice or list of engine ids, not {type(key).__name__}")
        return self.direct_view(key)

    def __iter__(self) -> Iterator[DirectView]:
        for eid in self.ids:
            yield self.direct_view(eid)

    def direct_view(self, targets: Any = "all", **kwargs: Any) -> DirectView:
        """A view running code on exactly these engines; ``'all'`` means every engine at each call."""
        if (
            not (isinstance(targets, str) and targets == "all")
            and targets is not None
            and not isinstance(targets, int)
        ):
            targets = self._build_targets(targets)[1]
        elif isinstance(targets, int) and targets < 0:
            targets = self._build_targets(targets)[1][0]
        return DirectView(self, targets=targets, **kwargs)

    def load_balanced_view(self, targets: Any = None, **kwargs: Any) -> LoadBalancedView:
        """A view sending each task to whichever engine the scheduler picks (among ``targets``)."""
        if targets == "all":
            targets = None
        if targets is not None:
            targets = self._build_targets(targets)[1]
        return LoadBalancedView(self, targets=targets, **kwargs)

    # -- waiting -------------------------------------------------------------------------------------

    def _jobs_to_msg_ids(self, jobs: Any) -> list[str]:
        if jobs is None:
            return list(self.outstanding)
        if isinstance(jobs, (int, str, AsyncResult)):
            jobs = [jobs]
        msg_ids: list[str] = []
        for job in jobs:
            if isinstance(job, int):
                msg_ids.append(self.history[job])
            elif isinstance(job, str):
                msg_ids.append(job)
            elif isinstance(job, AsyncResult):
                msg_ids.extend(job.msg_ids)
            else:
                raise TypeError(
                    f"a job is a history index, a msg_id or an AsyncResult, not {type(job).__name__}"
                )
        return msg_ids

    def wait(self, jobs: Any = None, timeout: float = -1) -> bool:
        """Wait for jobs (default: everything outstanding); True when all are done, False on timeout."""
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        for msg_id in self._jobs_to_msg_ids(jobs):
            entry = self._pending.get(msg_id)
            if entry is None:
                continue
            left = -1 if deadline is None else max(0.0, deadline - time.monotonic())
            if not entry[0].wait(left):
                return False
        return True

    def spin(self) -> None:
        """Kept for compatibility: the IO thread handles messages as they arrive."""

    def spin_thread(self, interval: float = 1) -> None:
        """Kept for compatibility: the IO thread always runs."""

    def stop_spin_thread(self) -> None:
        """Kept for compatibility."""

    def _wait_outputs(self, msg_ids: list[str], timeout: float = 2.0) -> None:
        """Outputs are complete once a task is finished (its reply is held for them); nothing to do."""

    # -- lifetime ------------------------------------------------------------------------------------

    def close(self, linger: int | None = None) -> None:
        """Stop the IO thread and close every socket; the client cannot be used afterwards."""
        if getattr(self, "_closed", True) and not getattr(self, "_io", None):
            return
        self._closed = True
        io_thread = getattr(self, "_io", None)
        stuck = False
        if io_thread is not None:
            io_thread.stop()
            stuck = io_thread.is_alive()
            self._io = None  # type: ignore[assignment]
            # a thread on a sync lane may be handing over a reply right now (bounded: never hang a close)
            locked = io_thread.dispatch_lock.acquire(timeout=5)
            try:
                self._fail_everything("the Client was closed before the reply arrived")
            finally:
                if locked:
                    io_thread.dispatch_lock.release()
        exporter = getattr(self, "_shm", None)
        if exporter is not None:
            withdraw(self._shm_probe)
            exporter.close()
        _LIVE_CLIENTS.discard(self)
        if getattr(self, "_own_context", False) and not stuck:
            self._context.term()  # a stuck IO thread still owns sockets: leave the context rather than hang

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._engines)} engines"
        return f"<Client {self._source}: {state}>"

    def _raise(self, exc: BaseException) -> None:
        raise add_remote_traceback(exc)
