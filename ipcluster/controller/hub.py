"""The hub: engine registry, registration, hub queries, task records and notifications.

Engine ids come from a counter and are never reused, except that an engine re-registering with its old id
and the same uuid (after a tunnel blip) gets that id back. Relays and the scheduler report every request
and reply here; the hub keeps the records (taskdb) and what is in flight on each engine, so an engine's
death turns each of its tasks into an EngineError reply on the channel the task came from.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import zmq

from ipcluster.error import InvalidSignature, WireError
from ipcluster.wire import RateLimitedLog, Session, SocketReader, feed_identities, now_iso

from .config import ControllerConfig
from .frames import as_bytes, client_uuid
from .replies import send_error_reply
from .resubmit import ResubmitError, resubmit
from .taskdb import BaseDB, new_record, validate_query

if TYPE_CHECKING:
    from .heartbeat import HeartMonitor
    from .scheduler import TaskScheduler

log = logging.getLogger("ipcluster.controller")

# (client identity, request header, channel) of a direct request in flight on an engine
InFlight = tuple[bytes, dict[str, Any], str]


@dataclass
class EngineRecord:
    id: int
    uuid: str
    ident: bytes
    inflight: dict[str, InFlight] = field(default_factory=dict)
    completed: deque[str] = field(default_factory=lambda: deque(maxlen=10_000))
    n_completed: int = 0


def _error(ename: str, evalue: str) -> dict[str, Any]:
    return {"status": "error", "ename": ename, "evalue": evalue, "traceback": []}


class Hub:
    """Answers the registration ROUTER and keeps the cluster's state. One per controller process."""

    def __init__(
        self,
        config: ControllerConfig,
        session: Session,
        registration: zmq.Socket,
        notification: zmq.Socket,
        db: BaseDB,
        loop: asyncio.AbstractEventLoop,
        on_shutdown: Callable[[], None],
    ) -> None:
        self.config = config
        self.session = session
        self.registration = registration
        self.notification = notification
        self.db = db
        self.loop = loop
        self.on_shutdown = on_shutdown
        self.reader = SocketReader(registration, self.on_message, loop=loop, copy=False)
        self.badlog = RateLimitedLog(log)
        self.heart: HeartMonitor | None = None
        self.scheduler: TaskScheduler | None = None
        # client-facing (socket, reader) per channel, for replies the controller writes itself
        self.channels: dict[str, tuple[zmq.Socket, SocketReader]] = {}
        self.engines: dict[int, EngineRecord] = {}
        self.by_ident: dict[bytes, EngineRecord] = {}
        self.uuids: dict[int, str] = {}  # every id ever given out → uuid (for purge by engine id)
        self.incoming: dict[str, tuple[int, asyncio.TimerHandle]] = {}
        self.dead: OrderedDict[str, int] = OrderedDict()  # recently failed uuid → id, for re-registration
        self._next_id = 0
        self.shutdown_announced = False
        self._auth_notice_at: dict[bytes, float] = {}
        self._handlers: dict[str, Callable[[list[bytes], dict[str, Any]], None]] = {
            "registration_request": self.registration_request,
            "unregistration_request": self.unregistration_request,
            "connection_request": self.connection_request,
            "queue_request": self.queue_request,
            "result_request": self.result_request,
            "history_request": self.history_request,
            "purge_request": self.purge_request,
            "shutdown_request": self.shutdown_request,
            "db_request": self.db_request,
            "resubmit_request": self.resubmit_request,
        }

    def start(self) -> None:
        self.reader.start()

    def stop(self) -> None:
        self.reader.stop()
        for _, handle in self.incoming.values():
            handle.cancel()

    # -- the registration socket ----------------------------------------------------------------------

    def on_message(self, frames: list[Any]) -> None:
        peer = as_bytes(frames[0]) if frames else b"?"
        try:
            idents, rest = feed_identities(frames)
            msg = self.session.deserialize(rest)
        except WireError as exc:
            self.badlog.warning(peer, "dropped a message on registration from %r: %s", peer, exc)
            if isinstance(exc, InvalidSignature):
                self._maybe_auth_notice(frames, exc)
            return
        handler = self._handlers.get(msg["msg_type"])
        if handler is None:
            self.reply(idents, msg, _error("ValueError", f"unknown message type {msg['msg_type']!r}"))
            return
        try:
            handler(idents, msg)
        except Exception as exc:  # a bad query must not take the hub down
            log.exception("error handling %s", msg["msg_type"])
            self.reply(idents, msg, _error(type(exc).__name__, str(exc)))

    def _maybe_auth_notice(self, frames: list[Any], exc: Exception) -> None:
        try:
            idents, rest = feed_identities(frames)
            msg_type = orjson.loads(as_bytes(rest[1])).get("msg_type")
        except Exception:
            return
        if msg_type not in ("registration_request", "connection_request") or not idents:
            return
        now = time.monotonic()
        if now - self._auth_notice_at.get(idents[0], -10.0) < 1.0:
            return
        if len(self._auth_notice_at) > 10_000:
            self._auth_notice_at.clear()
        self._auth_notice_at[idents[0]] = now
        evalue = f"the controller rejected the signature of this {msg_type} ({exc}): the keys differ"
        self.registration.send_multipart(self.session.auth_error_frames(idents, evalue))
        self.reader.poke()

    def reply(
        self, idents: list[bytes], request: dict[str, Any], content: dict[str, Any], buffers: list = ()
    ) -> None:
        reply_type = request["msg_type"].replace("_request", "_reply")
        self.session.send(
            self.registration, reply_type, content, parent=request["header"], idents=idents, buffers=buffers
        )
        self.reader.poke()

    def announce_shutdown(self) -> None:
        """Publish shutdown_notification once, whatever asked for the shutdown."""
        if not self.shutdown_announced:
            self.shutdown_announced = True
            self.notify("shutdown_notification", {})

    def notify(self, msg_type: str, content: dict[str, Any]) -> None:
        self.session.send(self.notification, msg_type, content, idents=[b"notification"])

    # -- registration -----------------------------------------------------------------------------------

    def registration_request(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        content = msg["content"]
        uuid = content.get("uuid")
        if not isinstance(uuid, str) or not uuid:
            self.reply(idents, msg, {**_error("ValueError", "registration_request needs a string 'uuid'")})
            return
        if (
            uuid in self.incoming
        ):  # a repeated request: same answer, and a sign of life that restarts the wait
            eid, handle = self.incoming[uuid]
            handle.cancel()
            timeout = self.config.registration_timeout_ms / 1000
            self.incoming[uuid] = (eid, self.loop.call_later(timeout, self._purge_registration, uuid))
        else:
            eid = self._choose_id(uuid, content.get("id"))
            timeout = self.config.registration_timeout_ms / 1000
            handle = self.loop.call_later(timeout, self._purge_registration, uuid)
            self.incoming[uuid] = (eid, handle)
            self.uuids[eid] = uuid
            if self.heart is not None:
                self.heart.expect(uuid.encode("ascii"))
        log.debug("registration of engine %d (%s) pending its first heartbeat", eid, uuid)
        self.reply(
            idents,
            msg,
            {
                "status": "ok",
                "id": eid,
                "hb_period": self.config.hb_period,
                "hb_misses": self.config.hb_misses,
                # the newest ping nonce: the heart may pong it at once instead of waiting up to a period
                "hb_nonce": self.heart.nonces[0].hex() if self.heart is not None else None,
            },
        )

    def _choose_id(self, uuid: str, wanted: Any) -> int:
        live = self.by_ident.get(uuid.encode("ascii"))
        if live is not None:  # it re-registers before we noticed it was gone: its old session is over
            self.unregister_engine(live.id, "it registered again")
            return live.id
        if isinstance(wanted, int) and not isinstance(wanted, bool) and wanted >= 0:
            if self.dead.get(uuid) == wanted:  # re-registration after a blip: its old id back
                del self.dead[uuid]
                return wanted
            if wanted not in self.uuids and all(eid != wanted for eid, _ in self.incoming.values()):
                # never issued by this controller (it was restarted with --reuse): keep the engine's id
                self._next_id = max(self._next_id, wanted + 1)
                return wanted
        eid = self._next_id
        self._next_id += 1
        return eid

    def _purge_registration(self, uuid: str) -> None:
        entry = self.incoming.pop(uuid, None)
        if entry is None:
            return
        if self.heart is not None:
            self.heart.forget(uuid.encode("ascii"))
        log.warning(
            "registration of engine %d (%s) purged: no heartbeat within %d ms",
            entry[0],
            uuid,
            self.config.registration_timeout_ms,
        )

    def on_new_heart(self, ident: bytes) -> None:
        """The heart monitor saw the first pong of an expected engine: finish its registration."""
        uuid = ident.decode("ascii", "replace")
        entry = self.incoming.pop(uuid, None)
        if entry is None:
            return
        eid, handle = entry
        handle.cancel()
        engine = EngineRecord(eid, uuid, ident, completed=deque(maxlen=self.config.task_retention))
        self.engines[eid] = engine
        self.by_ident[ident] = engine
        self.uuids[eid] = uuid
        if self.scheduler is not None:
            self.scheduler.add_engine(ident, eid)
        log.info("engine %d registered (%s)", eid, uuid)
        self.notify("registration_notification", {"id": eid, "uuid": uuid})

    def on_heart_failure(self, ident: bytes, reason: str | None = None) -> None:
        engine = self.by_ident.get(ident)
        if engine is not None:
            self.unregister_engine(engine.id, reason or f"it missed {self.config.hb_misses} heartbeats")

    def unregister_engine(self, eid: int, reason: str) -> None:
        """Remove an engine and fail every task in flight on it with EngineError."""
        engine = self.engines.pop(eid, None)
        if engine is None:
            return
        del self.by_ident[engine.ident]
        self.dead[engine.uuid] = eid
        while len(self.dead) > 10_000:
            self.dead.popitem(last=False)
        if self.heart is not None:
            self.heart.forget(engine.ident)
        log.log(
            logging.INFO if reason == "it asked to unregister" else logging.WARNING,
            "engine %d (%s) unregistered: %s; %d tasks in flight",
            eid,
            engine.uuid,
            reason,
            len(engine.inflight),
        )
        for msg_id, (client_id, header, channel) in engine.inflight.items():
            sock, reader = self.channels[channel]
            evalue = f"engine {eid} ({engine.uuid}) went away ({reason}) while running task {msg_id}"
            sent = send_error_reply(
                self.session, sock, client_id, header, "EngineError", evalue, eid, engine.uuid
            )
            reader.poke()
            if channel == "mux":
                self._complete_with(msg_id, sent, [])
        engine.inflight.clear()
        if self.scheduler is not None:
            self.scheduler.engine_died(engine.ident, reason)
        self.notify("unregistration_notification", {"id": eid, "uuid": engine.uuid})

    def unregistration_request(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        eid = msg["content"].get("id")
        if eid not in self.engines:
            self.reply(idents, msg, _error("IndexError", f"no registered engine with id {eid!r}"))
            return
        self.unregister_engine(eid, "it asked to unregister")
        self.reply(idents, msg, {"status": "ok"})

    def connection_request(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        engines = {str(e.id): e.uuid for e in self.engines.values()}
        content = {
            "status": "ok",
            "engines": engines,
            "task_scheme": self.config.scheme,
            "hb_period": self.config.hb_period,
        }
        self.reply(idents, msg, content)

    # -- records: called by the relays and the scheduler (hot path: keep lean) ---------------------------

    def direct_request(
        self, channel: str, msg: dict[str, Any], client_id: bytes, engine: EngineRecord
    ) -> None:
        header = msg["header"]
        msg_id = header["msg_id"]
        engine.inflight[msg_id] = (client_id, header, channel)
        if channel == "mux":
            rec = new_record(msg, client_uuid(client_id), "mux")
            rec["engine_uuid"] = engine.uuid
            self.db.add_record(msg_id, rec)

    def direct_unsent(self, msg_id: str, engine: EngineRecord) -> None:
        """The engine vanished before the request could be sent: forget it (an error reply follows)."""
        engine.inflight.pop(msg_id, None)

    def direct_reply(self, channel: str, msg: dict[str, Any], engine: EngineRecord) -> bool:
        """Record a reply; False if its request is not in flight (a late duplicate, to drop)."""
        msg_id = msg["parent_header"].get("msg_id")
        if not isinstance(msg_id, str) or engine.inflight.pop(msg_id, None) is None:
            return False
        if channel == "mux":
            self._complete_with(msg_id, msg, msg["buffers"])
            engine.completed.append(msg_id)
            engine.n_completed += 1
        return True

    def task_submitted(self, msg: dict[str, Any], client_id: bytes, ident: bytes | None = None) -> None:
        """Record a load-balanced task; ``ident``: the engine it was already sent to (the scheduler's fast
        path records it once on its way)."""
        rec = new_record(msg, client_uuid(client_id), "task")
        if ident is not None:
            engine = self.by_ident.get(ident)
            rec["engine_uuid"] = engine.uuid if engine else None
        self.db.add_record(msg["msg_id"], rec)

    def task_assigned(self, msg_id: str, ident: bytes | None) -> None:
        engine = self.by_ident.get(ident) if ident else None
        self.db.update_record(msg_id, {"engine_uuid": engine.uuid if engine else None})

    def task_finished(self, msg: dict[str, Any], ident: bytes | None) -> None:
        msg_id = msg["parent_header"].get("msg_id")
        self._complete_with(msg_id, msg, msg.get("buffers") or [])
        engine = self.by_ident.get(ident) if ident else None
        if engine is not None:
            engine.completed.append(msg_id)
            engine.n_completed += 1

    def _complete_with(self, msg_id: str, msg: dict[str, Any], buffers: list[Any]) -> None:
        md = msg["metadata"]
        update = {
            "result_header": msg["header"],
            "result_content": msg["content"],
            "result_metadata": md,
            "result_buffers": buffers,
            "started": md.get("started"),
            "completed": md.get("completed") or msg["header"].get("date") or now_iso(),
        }
        try:
            self.db.update_record(msg_id, update)
        except KeyError:
            pass  # culled or purged meanwhile

    def iopub(self, msg: dict[str, Any]) -> None:
        msg_id = msg["parent_header"].get("msg_id")
        if not msg_id or not isinstance(msg_id, str):
            return
        msg_type = msg["msg_type"]
        if msg_type not in ("stream", "error", "execute_result"):
            return
        rec = self.db.get(msg_id)
        if rec is None:
            return
        content = msg["content"]
        if msg_type == "stream":
            name = "stderr" if content.get("name") == "stderr" else "stdout"
            self.db.update_record(msg_id, {name: (rec.get(name) or "") + str(content.get("text", ""))})
        else:
            self.db.update_record(msg_id, {msg_type: content})

    # -- hub queries ------------------------------------------------------------------------------------

    def _engines_for(self, targets: Any) -> list[EngineRecord]:
        if targets is None:
            return sorted(self.engines.values(), key=lambda e: e.id)
        if isinstance(targets, (int, str)):
            targets = [targets]
        out = []
        for t in targets:
            engine = self.engines.get(t) if isinstance(t, int) else self.by_ident.get(str(t).encode("ascii"))
            if engine is None:
                raise IndexError(f"no registered engine {t!r}")
            out.append(engine)
        return out

    def queue_request(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        verbose = bool(msg["content"].get("verbose"))
        content: dict[str, Any] = {"status": "ok"}
        for engine in self._engines_for(msg["content"].get("targets")):
            queue = [m for m, (_, _, ch) in engine.inflight.items() if ch == "mux"]
            tasks = self.scheduler.tasks_on(engine.ident) if self.scheduler else []
            if verbose:
                content[str(engine.id)] = {
                    "queue": queue,
                    "completed": list(engine.completed),
                    "tasks": tasks,
                }
            else:
                content[str(engine.id)] = {
                    "queue": len(queue),
                    "completed": engine.n_completed,
                    "tasks": len(tasks),
                }
        unassigned = self.scheduler.unassigned() if self.scheduler else []
        content["unassigned"] = unassigned if verbose else len(unassigned)
        self.reply(idents, msg, content)

    def result_request(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        msg_ids = msg["content"].get("msg_ids") or []
        status_only = bool(msg["content"].get("status_only"))
        if isinstance(msg_ids, str):
            msg_ids = [msg_ids]
        records = {}
        for mid in msg_ids:
            rec = self.db.get(mid) if isinstance(mid, str) else None
            if rec is None:
                self.reply(
                    idents, msg, _error("KeyError", f"no such task: {mid!r} (never submitted, or purged)")
                )
                return
            records[mid] = rec
        content: dict[str, Any] = {"status": "ok", "pending": [], "completed": []}
        buffers: list[Any] = []
        for mid, rec in records.items():
            if not rec.get("completed"):
                content["pending"].append(mid)
                continue
            content["completed"].append(mid)
            if status_only:
                continue
            if rec.get("result_buffers_dropped"):
                self.reply(idents, msg, _error("KeyError", (
                    f"the controller no longer holds the result of {mid!r}: its buffers were dropped to stay "
                    "within --task-retention-bytes; raise it to keep more results")))  # fmt: skip
                return
            rbufs = rec.get("result_buffers") or []
            content[mid] = {
                "header": rec["header"],
                "result_header": rec["result_header"],
                "result_content": rec["result_content"],
                "result_metadata": rec["result_metadata"],
                "stdout": rec.get("stdout", ""),
                "stderr": rec.get("stderr", ""),
                "execute_result": rec.get("execute_result"),
                "buffer_count": len(rbufs),
            }
            buffers.extend(rbufs)
        self.reply(idents, msg, content, buffers)

    def history_request(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        self.reply(idents, msg, {"status": "ok", "history": self.db.get_history()})

    def purge_request(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        content = msg["content"]
        msg_ids = content.get("msg_ids") or []
        if msg_ids == "all":
            self.db.drop_matching_records({"completed": {"$ne": None}})
        else:
            recs = [(mid, self.db.get(mid)) for mid in msg_ids]
            pending = [mid for mid, rec in recs if rec is not None and not rec.get("completed")]
            if pending:
                self.reply(
                    idents, msg, _error("IndexError", f"cannot purge pending tasks: {', '.join(pending)}")
                )
                return
            for mid, rec in recs:
                if rec is not None:
                    self.db.drop_record(mid)
        engine_ids = content.get("engine_ids") or []
        uuids = [self.uuids[e] for e in engine_ids if e in self.uuids]
        if uuids:
            self.db.drop_matching_records({"engine_uuid": {"$in": uuids}, "completed": {"$ne": None}})
        for e in engine_ids:
            if e in self.engines:
                self.engines[e].completed.clear()
        self.reply(idents, msg, {"status": "ok"})

    def shutdown_request(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        self.reply(idents, msg, {"status": "ok"})
        self.announce_shutdown()
        log.info(
            "shutdown requested by %r; exiting in %.1f s",
            idents[0] if idents else None,
            self.config.shutdown_delay,
        )
        self.loop.call_later(self.config.shutdown_delay, self.on_shutdown)

    def resubmit_request(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        """Run finished tasks again as new tasks; their replies go to the asking client (resubmit.py)."""
        try:
            content = resubmit(self, idents[0] if idents else b"", msg["content"])
        except ResubmitError as exc:
            content = _error(exc.ename, exc.evalue)
        self.reply(idents, msg, content)

    def db_request(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        query = validate_query(msg["content"].get("query", {}))
        keys = msg["content"].get("keys")
        records = self.db.find_records(query, keys)
        self.reply(idents, msg, {"status": "ok", "records": records})
