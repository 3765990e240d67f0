"""How the Client handles what its IO thread receives: replies, output, hub answers, notifications.

These methods run on the IO thread (except ``_unpack_reply``, which runs in the thread that asks for a
result). They only touch plain dicts and sets, whose single operations are atomic under the GIL, and hand
finished tasks to their AsyncResult.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

from ipcluster import error, wire
from ipcluster.wire.shm import ShmExporter

from . import io as clientio
from .asyncresult import AsyncResult
from .metadata import Metadata


class ReplyRouter:
    """The Client's receiving half (a mixin: the state lives on the Client)."""

    metadata: dict[str, Metadata]
    outstanding: set[str]
    _pending: dict[str, tuple[AsyncResult, int]]
    _held: dict[str, float]
    _iopub_seen: dict[str, int]
    _replies: dict[str, dict[str, Any]]
    _queries: dict[str, Future]
    _engines: dict[int, str]
    _hub_shutdown: bool
    _source: str
    _shm: ShmExporter

    # -- IO thread callbacks -------------------------------------------------------------------------

    def _on_reply(self, msg: dict[str, Any]) -> None:
        parent_id = msg["parent_header"].get("msg_id")
        if parent_id not in self._pending or parent_id in self._held:
            return
        md = self.metadata.get(parent_id)
        rmd = msg["metadata"]
        if md is not None:
            md["started"] = wire.parse_date(rmd.get("started"))
            md["completed"] = wire.parse_date(rmd.get("completed") or msg["header"].get("date"))
            md["received"] = wire.utcnow()
            md["status"] = msg["content"].get("status")
            if rmd.get("engine_id") is not None:
                md["engine_id"] = rmd["engine_id"]
            if rmd.get("engine_uuid"):
                md["engine_uuid"] = rmd["engine_uuid"]
            expected = rmd.get("iopub_count") or 0
            md["iopub_count"] = expected
            self._replies[parent_id] = msg
            if self._iopub_seen.get(parent_id, 0) < expected:
                self._held[parent_id] = time.monotonic() + clientio.OUTPUT_GRACE
                return
        self._replies[parent_id] = msg
        self._finish(parent_id)

    def _finish(self, msg_id: str) -> None:
        self._shm.release(msg_id)  # its engine has answered (or is gone): its shared buffers can go
        entry = self._pending.pop(msg_id, None)
        self._held.pop(msg_id, None)
        self._iopub_seen.pop(msg_id, None)
        self.outstanding.discard(msg_id)
        if entry is not None:
            entry[0]._deliver(entry[1], self._replies[msg_id])

    def _on_tick(self) -> float | None:
        if not self._held:
            return None
        now = time.monotonic()
        expired = [m for m, deadline in self._held.items() if deadline <= now]
        for msg_id in expired:
            self._finish(msg_id)
        return min(self._held.values()) - now if self._held else None

    def _on_query_reply(self, msg: dict[str, Any] | None, auth_notice: str | None) -> None:
        if auth_notice is not None:
            exc = error.AuthenticationError(
                f"the controller rejected this client's signature: the key in {self._source} does not match "
                f"the controller's ({auth_notice}); copy the current ipcontroller-client.json"
            )
            for future in list(self._queries.values()):
                if not future.done():
                    future.set_exception(exc)
            self._queries.clear()
            return
        assert msg is not None
        future = self._queries.pop(msg["parent_header"].get("msg_id"), None)
        if future is not None and not future.done():
            future.set_result(msg)

    def _on_iopub(self, msg: dict[str, Any]) -> None:
        parent_id = msg["parent_header"].get("msg_id")
        md = self.metadata.get(parent_id)
        if md is None:
            return
        msg_type, content = msg["msg_type"], msg["content"]
        if msg_type == "stream":
            name = content.get("name")
            if name in ("stdout", "stderr"):
                md[name] = md[name] + str(content.get("text", ""))
        elif msg_type == "error":
            md["error"] = error.unwrap_exception(content)
        elif msg_type == "execute_input":
            md["execute_input"] = content.get("code")
        elif msg_type == "execute_result":
            md["execute_result"] = content
        elif msg_type == "display_data":
            md["outputs"].append(content)
        if parent_id in self._pending:
            seen = self._iopub_seen[parent_id] = self._iopub_seen.get(parent_id, 0) + 1
            if parent_id in self._held and seen >= md["iopub_count"]:
                self._finish(parent_id)

    def _on_notification(self, msg: dict[str, Any]) -> None:
        msg_type, content = msg["msg_type"], msg["content"]
        with self._engines_cond:
            if msg_type == "registration_notification":
                self._engines[int(content["id"])] = content["uuid"]
            elif msg_type == "unregistration_notification":
                self._engines.pop(int(content["id"]), None)
            elif msg_type == "shutdown_notification":
                self._hub_shutdown = True
                self._fail_everything("the controller shut down before answering")
            self._engines_cond.notify_all()

    def _fail_everything(self, why: str) -> None:
        for msg_id in list(self._pending):
            self._replies[msg_id] = {
                "msg_type": "apply_reply",
                "header": {},
                "metadata": {},
                "content": {"status": "error", "ename": "EngineError", "evalue": why, "traceback": []},
                "buffers": [],
            }
            self._finish(msg_id)
        for future in list(self._queries.values()):
            if not future.done():
                future.set_exception(error.EngineError(why))
        self._queries.clear()

    # -- results -------------------------------------------------------------------------------------

    def _unpack_reply(self, reply: dict[str, Any] | None, msg_id: str) -> Any:
        """The value of one reply, or the exception object it carries (not raised)."""
        if reply is None:
            return error.TimeoutError(f"no reply for {msg_id}")
        content = reply["content"]
        status = content.get("status")
        if status == "ok":
            if reply.get("msg_type") == "apply_reply" and reply.get("buffers"):
                try:
                    return wire.deserialize_object(reply["buffers"])
                except Exception as exc:
                    return error.SerializationError(
                        f"the result of {msg_id} could not be unpickled here: {type(exc).__name__}: {exc}; "
                        "install on the client the modules its objects come from"
                    )
            return None
        if status == "aborted":
            return error.TaskAborted(msg_id)
        exc = error.unwrap_exception(content)
        info = getattr(exc, "engine_info", None)
        md = self.metadata.get(msg_id)
        if (
            md is not None
            and isinstance(info, dict)
            and info.get("engine_id") is None
            and md.get("engine_id") is not None
        ):
            info["engine_id"] = md["engine_id"]
        return exc
