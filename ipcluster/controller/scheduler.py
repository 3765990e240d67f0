"""The load-balancing TaskScheduler: picks an engine for each task on the ``task`` channel.

Schemes: ``leastload`` (default: fewest tasks in flight, least recently used breaks ties), ``lru``,
``plainrandom``, ``twobin`` (two random picks, the less recently used wins) and ``weighted`` (two picks
weighted by 1/load, the less loaded wins). ``hwm`` caps the tasks in flight per engine (0 = no cap);
tasks beyond it wait here, in order, and go out as engines free up.

Request metadata (docs/protocol.md §8): ``targets`` (engine ids or uuids), ``after``/``follow``
(dependency.Dependency), ``retries`` (re-run elsewhere after an error), ``timeout`` (seconds a task may
wait before it is failed with TaskTimeout). A reply with ``dependencies_met: false`` (the engine raised
UnmetDependency) blacklists that engine for that task and the task goes elsewhere; a task no engine can
ever run fails with ImpossibleDependency. A task is never sent to the same engine twice.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from ipcluster.error import WireError
from ipcluster.wire import RateLimitedLog, Session, SocketReader

from .dependency import NO_DEPENDENCY, Dependency
from .frames import as_bytes, forward, open_relayed
from .replies import send_error_reply

if TYPE_CHECKING:
    from .hub import Hub

log = logging.getLogger("ipcluster.controller")


class Job:
    """One load-balanced task: the raw request frames (from the delimiter on) and its constraints."""

    __slots__ = (
        "msg_id",
        "client_id",
        "frames",
        "header",
        "targets",
        "after",
        "follow",
        "retries",
        "deadline",
        "blacklist",
        "engine",
    )

    def __init__(self, msg_id: str, client_id: bytes, frames: list[Any], header: dict[str, Any]) -> None:
        self.msg_id = msg_id
        self.client_id = client_id
        self.frames = frames
        self.header = header
        self.targets: set[bytes] | None = None
        self.after: Dependency = NO_DEPENDENCY
        self.follow: Dependency = NO_DEPENDENCY
        self.retries = 0
        self.deadline = 0.0
        self.blacklist: set[bytes] = set()
        self.engine: bytes | None = None


class EngineLoad:
    __slots__ = ("ident", "id", "load", "last")

    def __init__(self, ident: bytes, eid: int, last: int) -> None:
        self.ident = ident
        self.id = eid
        self.load = 0
        self.last = last


def _leastload(cands: list[EngineLoad]) -> EngineLoad:
    best = cands[0]
    for e in cands:
        if e.load < best.load or (e.load == best.load and e.last < best.last):
            best = e
    return best


def _lru(cands: list[EngineLoad]) -> EngineLoad:
    return min(cands, key=lambda e: e.last)


def _plainrandom(cands: list[EngineLoad]) -> EngineLoad:
    return random.choice(cands)


def _twobin(cands: list[EngineLoad]) -> EngineLoad:
    a, b = random.choice(cands), random.choice(cands)
    return a if a.last <= b.last else b


def _weighted(cands: list[EngineLoad]) -> EngineLoad:
    weights = [1.0 / (1e-6 + e.load) for e in cands]
    a, b = random.choices(cands, weights, k=2)
    return a if a.load <= b.load else b


SCHEMES: dict[str, Callable[[list[EngineLoad]], EngineLoad]] = {
    "leastload": _leastload,
    "lru": _lru,
    "plainrandom": _plainrandom,
    "twobin": _twobin,
    "weighted": _weighted,
}


class TaskScheduler:
    """Owns the task channel's two ROUTERs; reports submissions, destinations and results to the hub."""

    def __init__(
        self,
        session: Session,
        hub: Hub,
        client_sock: zmq.Socket,
        engine_sock: zmq.Socket,
        loop: asyncio.AbstractEventLoop,
        scheme: str = "leastload",
        hwm: int = 0,
        history: int = 100_000,
    ) -> None:
        self.session = session
        self.hub = hub
        self.client_sock = client_sock
        self.engine_sock = engine_sock
        self.loop = loop
        self.pick = SCHEMES[scheme]
        self.hwm = hwm
        self.history = history
        self.client_reader = SocketReader(client_sock, self.on_client, loop=loop, copy=False)
        self.engine_reader = SocketReader(engine_sock, self.on_engine, loop=loop, copy=False)
        self.badlog = RateLimitedLog(log)
        self.engines: dict[bytes, EngineLoad] = {}
        self.pending: dict[bytes, dict[str, Job]] = {}
        self.jobs: dict[str, Job] = {}  # every unfinished job
        self.waiting: dict[str, Job] = {}  # runnable but no engine has room (or none qualifies yet)
        self.depending: dict[str, Job] = {}  # waiting for after/follow tasks to finish
        self.graph: dict[str, set[str]] = {}  # dependency msg_id → msg_ids waiting on it
        self.timed: dict[str, Job] = {}  # waiting/depending jobs with a timeout
        self.finished: dict[str, tuple[bytes | None, bool]] = {}  # msg_id → (engine, succeeded), bounded
        self.all_done: set[str] = set()
        self.all_failed: set[str] = set()
        self.done_on: dict[bytes, set[str]] = {}
        self.failed_on: dict[bytes, set[str]] = {}
        self._use = 0
        self._fresh = 0
        self._auditor: asyncio.TimerHandle | None = None
        hub.channels["task"] = (client_sock, self.client_reader)

    def start(self) -> None:
        self.client_reader.start()
        self.engine_reader.start()

    def stop(self) -> None:
        self.client_reader.stop()
        self.engine_reader.stop()
        if self._auditor is not None:
            self._auditor.cancel()

    # -- what the hub asks --------------------------------------------------------------------------------

    def tasks_on(self, ident: bytes) -> list[str]:
        return list(self.pending.get(ident, ()))

    def unassigned(self) -> list[str]:
        return [*self.waiting, *self.depending]

    def add_engine(self, ident: bytes, eid: int) -> None:
        self._fresh -= 1  # a new engine is the least recently used
        self.engines[ident] = EngineLoad(ident, eid, self._fresh)
        self.pending[ident] = {}
        self.done_on.setdefault(ident, set())
        self.failed_on.setdefault(ident, set())
        self._dispatch_waiting()

    def engine_died(self, ident: bytes, reason: str) -> None:
        """Fail (or re-route, if they have retries left) the tasks in flight on a dead engine."""
        engine = self.engines.pop(ident, None)
        jobs = self.pending.pop(ident, {})
        eid = engine.id if engine else None
        uuid = ident.decode("ascii", "replace")
        for job in jobs.values():
            job.engine = None
            if job.retries > 0:
                job.retries -= 1
                job.blacklist.add(ident)
                self.hub.task_assigned(job.msg_id, None)
                if not self._impossible(job):
                    self._maybe_run(job)
                    continue
            evalue = f"engine {eid} ({uuid}) went away ({reason}) while running task {job.msg_id}"
            self._fail(job, "EngineError", evalue, eid, uuid)
        for job in list(self.waiting.values()):
            if self._impossible(job):
                self._fail(job, "ImpossibleDependency", self._why_impossible(job))

    # -- submissions ------------------------------------------------------------------------------------

    def on_client(self, frames: list[Any]) -> None:
        client_id = as_bytes(frames[0])
        try:
            msg = open_relayed(self.session, frames, 1)
        except WireError as exc:
            self.badlog.warning(client_id, "dropped a task request from %r: %s", client_id, exc)
            return
        msg_id = msg["msg_id"]
        if type(msg_id) is not str:
            self.badlog.warning(client_id, "dropped a task from %r whose msg_id is not a string", client_id)
            return
        if msg_id in self.jobs:
            self.badlog.warning(
                client_id, "dropped a task from %r reusing the msg_id of a task in flight", client_id
            )
            return
        self.accept_task(client_id, frames[1:], msg)

    def accept_task(self, client_id: bytes, frames: list[Any], msg: dict[str, Any]) -> None:
        """Take a verified task (``frames`` from the delimiter on): a client's, or one the hub resubmits;
        its reply goes to ``client_id``."""
        msg_id = msg["msg_id"]
        job = Job(msg_id, client_id, frames, msg["header"])
        self.jobs[msg_id] = job
        md = msg["metadata"]
        if not md and not self.hwm and self.engines:
            # the common case (no targets, dependencies, retries, timeout or hwm): the task goes out at once,
            # and its record is kept once it is on its way (single loop: its reply cannot come before)
            e = self.pick(list(self.engines.values()))
            if self._send(job, e):
                self.hub.task_submitted(msg, client_id, e.ident)
                return
        self.hub.task_submitted(msg, client_id)
        if not md:
            self._maybe_run(job)
            return
        try:
            self._read_constraints(job, md)
        except (ValueError, TypeError) as exc:
            self._fail(job, "InvalidDependency", str(exc))
            return
        for dep in (job.after, job.follow):
            if msg_id in dep.ids:
                self._fail(job, "InvalidDependency", f"task {msg_id} depends on itself")
                return
            unknown = [
                d
                for d in dep.ids
                if d not in self.finished and d not in self.jobs and not self._known_from_hub(d)
            ]
            if unknown:
                self._fail(
                    job,
                    "InvalidDependency",
                    f"task depends on unknown or unfinished direct tasks: {', '.join(unknown)}",
                )
                return
        if job.after.unreachable(self.all_done, self.all_failed) or job.follow.unreachable(
            self.all_done, self.all_failed
        ):
            self._fail(
                job, "ImpossibleDependency", f"a dependency of task {msg_id} failed or can never be met"
            )
            return
        if job.deadline:
            self.timed[msg_id] = job
            self._ensure_auditor()
        if not self._deps_ready(job):
            self.depending[msg_id] = job
            for dep_id in (job.after.ids | job.follow.ids) - self.finished.keys():
                self.graph.setdefault(dep_id, set()).add(msg_id)
            return
        self._maybe_run(job)

    def _read_constraints(self, job: Job, md: dict[str, Any]) -> None:
        targets = md.get("targets")
        if targets:
            if isinstance(targets, (int, str)):
                targets = [targets]
            job.targets = {self._target_ident(t) for t in targets}
        job.after = Dependency.from_wire(md.get("after"))
        job.follow = Dependency.from_wire(md.get("follow"))
        job.retries = int(md.get("retries") or 0)
        timeout = float(md.get("timeout") or 0)
        if timeout > 0:
            job.deadline = self.loop.time() + timeout

    def _target_ident(self, target: Any) -> bytes:
        if isinstance(target, bool) or not isinstance(target, (int, str)):
            raise ValueError(f"targets must be engine ids or uuids, not {target!r}")
        if isinstance(target, int):
            uuid = self.hub.uuids.get(target)
            return (uuid or f"<no engine {target}>").encode("ascii")
        return target.encode("ascii")

    def _known_from_hub(self, msg_id: str) -> bool:
        """A dependency on a task this scheduler did not run (a direct task): usable once it completed."""
        rec = self.hub.db.get(msg_id)
        if rec is None or not rec.get("completed"):
            return False
        ok = (rec.get("result_content") or {}).get("status") == "ok"
        ident = rec["engine_uuid"].encode("ascii") if rec.get("engine_uuid") else None
        self._record_finished(msg_id, ident, ok)
        return True

    def _deps_ready(self, job: Job) -> bool:
        if not job.after.check(self.all_done, self.all_failed):
            return False
        return not job.follow or job.follow.check(self.all_done, self.all_failed)

    def _can_run(self, e: EngineLoad, job: Job) -> bool:
        if self.hwm and e.load >= self.hwm:
            return False
        if e.ident in job.blacklist or (job.targets is not None and e.ident not in job.targets):
            return False
        return not job.follow or job.follow.check(self.done_on[e.ident], self.failed_on[e.ident])

    def _maybe_run(self, job: Job) -> None:
        if job.targets is None and not job.blacklist and not job.follow and not self.hwm and self.engines:
            self._submit(job, self.pick(list(self.engines.values())))
            return
        cands = [e for e in self.engines.values() if self._can_run(e, job)]
        if cands:
            self._submit(job, self.pick(cands))
        elif self._impossible(job):
            self._fail(job, "ImpossibleDependency", self._why_impossible(job))
        else:
            self.waiting[job.msg_id] = job

    def _impossible(self, job: Job) -> bool:
        return bool(self._why_impossible(job))

    def _why_impossible(self, job: Job) -> str:
        if job.targets is not None:
            usable = job.targets - job.blacklist
            if not usable:
                return f"task {job.msg_id} was refused by (or failed on) every engine it may run on"
            if not usable & self.engines.keys():
                return f"none of the engines task {job.msg_id} may run on is registered"
        elif self.engines and self.engines.keys() <= job.blacklist:
            return f"task {job.msg_id} was refused by (or failed on) every registered engine"
        if job.follow and job.follow.all:
            where = {self.finished[d][0] for d in job.follow.ids if d in self.finished}
            if len(where) > 1:
                return f"task {job.msg_id} follows tasks that ran on different engines"
            if where and (where - self.engines.keys() or where <= job.blacklist):
                return f"task {job.msg_id} follows tasks whose engine is gone or refused it"
        return ""

    def _submit(self, job: Job, e: EngineLoad) -> None:
        if self._send(job, e):
            self.hub.task_assigned(job.msg_id, e.ident)
        else:
            self._maybe_run(job)

    def _send(self, job: Job, e: EngineLoad) -> bool:
        """Forward the task to engine ``e`` and count it there; False (``e`` blacklisted) when ``e`` is gone."""
        try:
            forward(self.engine_sock, [e.ident, job.client_id, *job.frames])
        except zmq.ZMQError as exc:
            if exc.errno != errno.EHOSTUNREACH:
                raise
            job.blacklist.add(e.ident)
            return False
        self.engine_reader.poke()
        e.load += 1
        self._use += 1
        e.last = self._use
        job.engine = e.ident
        self.pending[e.ident][job.msg_id] = job
        self.timed.pop(job.msg_id, None)
        return True

    def _dispatch_waiting(self) -> None:
        for job in list(self.waiting.values()):
            if self.hwm and all(e.load >= self.hwm for e in self.engines.values()):
                return
            cands = [e for e in self.engines.values() if self._can_run(e, job)]
            if cands:
                del self.waiting[job.msg_id]
                self._submit(job, self.pick(cands))

    # -- results ----------------------------------------------------------------------------------------

    def on_engine(self, frames: list[Any]) -> None:
        ident = as_bytes(frames[0])
        try:
            msg = open_relayed(self.session, frames, 2)
        except WireError as exc:
            self.badlog.warning(ident, "dropped a task reply from %r: %s", ident, exc)
            return
        parent_id = msg["parent_header"].get("msg_id")
        job = self.pending.get(ident, {}).pop(parent_id, None) if isinstance(parent_id, str) else None
        if job is None:
            self.badlog.warning(ident, "dropped a task reply from %r for no task in flight there", ident)
            return
        e = self.engines.get(ident)
        if e is not None:
            e.load -= 1
        job.engine = None
        ok = msg["content"].get("status") == "ok"
        if msg["metadata"].get("dependencies_met") is False:
            job.blacklist.add(ident)
            self.hub.task_assigned(job.msg_id, None)
            if self._impossible(job):
                self._fail(job, "ImpossibleDependency", self._why_impossible(job))
            else:
                self._maybe_run(job)
        elif not ok and job.retries > 0 and not self._impossible_after(job, ident):
            job.retries -= 1
            job.blacklist.add(ident)
            self.hub.task_assigned(job.msg_id, None)
            self._maybe_run(job)
        else:
            forward(self.client_sock, frames[1:])
            self.client_reader.poke()
            self.hub.task_finished(msg, ident)
            self._finish(job, ident, ok)
        if self.hwm and self.waiting:
            self._dispatch_waiting()

    def _impossible_after(self, job: Job, ident: bytes) -> bool:
        """Would blacklisting ``ident`` leave the task nowhere to run? Then its real error goes back."""
        job.blacklist.add(ident)
        try:
            return self._impossible(job)
        finally:
            job.blacklist.discard(ident)

    def _fail(
        self, job: Job, ename: str, evalue: str, eid: int | None = None, uuid: str | None = None
    ) -> None:
        """Answer the client with an error the controller writes itself, and finish the task as failed."""
        self.waiting.pop(job.msg_id, None)
        self.depending.pop(job.msg_id, None)
        sent = send_error_reply(
            self.session, self.client_sock, job.client_id, job.header, ename, evalue, eid, uuid
        )
        self.client_reader.poke()
        sent["buffers"] = []
        self.hub.task_finished(sent, None)
        self._finish(job, None, False)

    def _finish(self, job: Job, ident: bytes | None, ok: bool) -> None:
        self.jobs.pop(job.msg_id, None)
        self.timed.pop(job.msg_id, None)
        self._record_finished(job.msg_id, ident, ok)
        self._update_graph(job.msg_id)

    def _record_finished(self, msg_id: str, ident: bytes | None, ok: bool) -> None:
        self.finished[msg_id] = (ident, ok)
        (self.all_done if ok else self.all_failed).add(msg_id)
        if ident is not None:
            (self.done_on if ok else self.failed_on).setdefault(ident, set()).add(msg_id)
        while len(self.finished) > self.history:
            old = next(iter(self.finished))
            old_ident, old_ok = self.finished.pop(old)
            (self.all_done if old_ok else self.all_failed).discard(old)
            if old_ident is not None:
                (self.done_on if old_ok else self.failed_on).get(old_ident, set()).discard(old)

    def _update_graph(self, msg_id: str) -> None:
        for waiting_id in self.graph.pop(msg_id, ()):
            job = self.depending.get(waiting_id)
            if job is None:
                continue
            if job.after.unreachable(self.all_done, self.all_failed) or job.follow.unreachable(
                self.all_done, self.all_failed
            ):
                self._fail(
                    job,
                    "ImpossibleDependency",
                    f"a dependency of task {job.msg_id} failed or can never be met",
                )
            elif self._deps_ready(job):
                del self.depending[waiting_id]
                self._maybe_run(job)

    # -- timeouts ---------------------------------------------------------------------------------------

    def _ensure_auditor(self) -> None:
        if self._auditor is None:
            self._auditor = self.loop.call_later(0.2, self._audit)

    def _audit(self) -> None:
        self._auditor = None
        now = self.loop.time()
        for job in [j for j in self.timed.values() if j.deadline <= now]:
            self._fail(
                job, "TaskTimeout", f"task {job.msg_id} waited longer than its timeout without running"
            )
        if self.timed:
            self._ensure_auditor()
