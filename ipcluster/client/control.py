"""The Client's control requests (abort, clear, shutdown) and hub queries (status, purge, history, db)."""

from __future__ import annotations

import builtins
import threading
import time
from datetime import datetime
from typing import Any

from ipcluster import error, wire

from . import io as clientio
from .asyncresult import AsyncHubResult, AsyncResult
from .metadata import Metadata


class ControlMixin:
    """Methods of Client that talk to the hub or to the engines' control channel."""

    block: bool

    # -- control channel -----------------------------------------------------------------------------

    def _control(
        self,
        msg_type: str,
        content: dict[str, Any],
        targets: Any,
        block: bool | None,
        timeout: float | None = -1,
    ) -> AsyncResult:
        idents, ids = self._build_targets(targets)  # type: ignore[attr-defined]
        ar = self._submit(
            clientio.CONTROL,
            msg_type,
            list(zip(idents, ids, strict=False)),
            content=content,  # type: ignore[attr-defined]
            fname=msg_type.replace("_request", ""),
            targets=ids,
        )
        if self.block if block is None else block:
            ar.get(timeout)
        return ar

    def clear(self, targets: Any = None, block: bool | None = None) -> AsyncResult:
        """Empty the user namespace on these engines."""
        return self._control("clear_request", {}, targets, block)

    def abort(self, jobs: Any = None, targets: Any = None, block: bool | None = None) -> AsyncResult:
        """Drop queued tasks (``jobs``: msg_ids, AsyncResults or history indices; None: every queued task)."""
        msg_ids = None if jobs is None else self._jobs_to_msg_ids(jobs)  # type: ignore[attr-defined]
        return self._control("abort_request", {"msg_ids": msg_ids}, targets, block)

    def shutdown(
        self, targets: Any = "all", restart: bool = False, hub: bool = False, block: bool | None = None
    ) -> None:
        """Stop engines (and with ``hub=True`` the controller too, after every engine)."""
        block = self.block if block is None else block
        if hub:
            targets = "all"
        try:
            ar = self._control("shutdown_request", {"restart": restart}, targets, False)
        except error.NoEnginesRegistered:
            ar = None
        if ar is not None and (block or hub):
            try:
                ar.get(5.0)
            except error.KernelError:
                pass
        if hub:
            try:
                self._query("shutdown_request", {})  # type: ignore[attr-defined]
            except error.EngineError:
                # the shutdown notification (another socket) overtook the reply: the controller is going, as asked
                if not self._hub_shutdown:  # type: ignore[attr-defined]
                    raise

    # -- hub queries ---------------------------------------------------------------------------------

    def queue_status(self, targets: Any = "all", verbose: bool = False) -> dict[Any, Any]:
        """Per engine: ``queue`` (direct tasks in flight), ``tasks`` (load-balanced), ``completed``;
        plus ``unassigned`` (tasks the scheduler has not placed yet)."""
        ids = None
        if targets is not None and targets != "all":
            ids = self._build_targets(targets)[1]  # type: ignore[attr-defined]
        content = self._query("queue_request", {"targets": ids, "verbose": verbose})["content"]  # type: ignore[attr-defined]
        status: dict[Any, Any] = {}
        for key, value in content.items():
            if key == "status":
                continue
            status[int(key) if str(key).lstrip("-").isdigit() else key] = value
        if isinstance(targets, int):
            return status.get(self._build_targets(targets)[1][0], {})  # type: ignore[attr-defined]
        return status

    def result_status(self, msg_ids: Any, status_only: bool = True) -> dict[str, Any]:
        """``{pending: [...], completed: [...]}``, plus each completed result unless ``status_only``."""
        msg_ids = self._jobs_to_msg_ids(msg_ids)  # type: ignore[attr-defined]
        pending_here = self._pending  # type: ignore[attr-defined]
        local = [m for m in msg_ids if m in self._replies and m not in pending_here]  # type: ignore[attr-defined]
        remote = [m for m in msg_ids if m not in local]
        out: dict[str, Any] = {"pending": [], "completed": list(local)}
        if not status_only:
            for m in local:
                out[m] = self.results[m]  # type: ignore[attr-defined]
        if remote:
            msg = self._query("result_request", {"msg_ids": remote, "status_only": status_only})  # type: ignore[attr-defined]
            content = msg["content"]
            out["pending"].extend(content.get("pending", []))
            out["completed"].extend(content.get("completed", []))
            if not status_only:
                out.update(_records_to_results(content, msg["buffers"]))
        if not status_only:
            failures = [out[m] for m in out["completed"] if isinstance(out.get(m), BaseException)]
            if len(failures) == 1:
                raise failures[0]
            error.collect_exceptions(failures, "result_status")
        return out

    def purge_results(self, jobs: Any = (), targets: Any = ()) -> None:
        """Forget finished tasks here and in the controller's records (``'all'`` for everything)."""
        if not jobs and not targets:
            raise ValueError("Must specify at least one of `targets` and `jobs`")
        msg_ids: Any = "all" if jobs == "all" else self._jobs_to_msg_ids(jobs) if jobs else []  # type: ignore[attr-defined]
        engine_ids: Any = []
        if targets:
            engine_ids = self._build_targets(None if targets == "all" else targets)[1]  # type: ignore[attr-defined]
        if msg_ids != "all":
            busy = [m for m in msg_ids if m in self._pending]  # type: ignore[attr-defined]
            if busy:
                raise RuntimeError(f"can't purge {len(busy)} tasks still running: wait for them first")
        self._query("purge_request", {"msg_ids": msg_ids, "engine_ids": engine_ids})  # type: ignore[attr-defined]
        self.purge_local_results(jobs if jobs else ())

    def purge_local_results(self, jobs: Any = "all") -> None:
        """Forget finished results kept in this client."""
        if jobs == "all":
            self.results.clear()  # type: ignore[attr-defined]
            return
        for msg_id in self._jobs_to_msg_ids(jobs) if jobs else []:  # type: ignore[attr-defined]
            self.results.pop(msg_id, None)  # type: ignore[attr-defined]

    def purge_hub_results(self, jobs: Any = (), targets: Any = ()) -> None:
        self.purge_results(jobs, targets)

    def purge_everything(self) -> None:
        self.purge_results("all")

    def hub_history(self) -> list[str]:
        """Every msg_id the controller has seen, in submission order."""
        return list(self._query("history_request", {})["content"].get("history", []))  # type: ignore[attr-defined]

    def db_query(self, query: dict[str, Any], keys: list[str] | None = None) -> list[dict[str, Any]]:
        """Task records matching a (Mongo-style) query."""
        content = self._query("db_request", {"query": query, "keys": keys})["content"]  # type: ignore[attr-defined]
        records = list(content.get("records", []))
        for record in records:  # timestamps come back as datetimes, as in the seed and ipyparallel
            for key in _DATE_KEYS.intersection(record):
                if isinstance(record[key], str):
                    try:
                        record[key] = datetime.fromisoformat(record[key])
                    except ValueError:
                        pass
        return records

    def get_result(
        self, indices_or_msg_ids: Any = None, block: bool | None = None, owner: bool = True
    ) -> AsyncResult:
        """An AsyncResult for earlier tasks: ours, or any task the controller knows (fetched from it)."""
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        msg_ids = self._jobs_to_msg_ids(indices_or_msg_ids)  # type: ignore[attr-defined]
        single = isinstance(indices_or_msg_ids, (int, str))
        if all(m in self.metadata for m in msg_ids):  # type: ignore[attr-defined]
            ar = AsyncResult(self, msg_ids, fname="get_result", single=single)  # type: ignore[arg-type]
            for i, m in enumerate(msg_ids):
                self._relay(ar, i, m)
        else:
            ar = AsyncHubResult(self, msg_ids, fname="get_result", single=single)  # type: ignore[arg-type]
            threading.Thread(
                target=self._poll_hub, args=(ar,), daemon=True, name="ipcluster-hub-result"
            ).start()
        if self.block if block is None else block:
            ar.get()
        return ar

    def _relay(self, ar: AsyncResult, index: int, msg_id: str) -> None:
        entry = self._pending.get(msg_id)  # type: ignore[attr-defined]
        if entry is None:
            ar._deliver(index, self._replies.get(msg_id))  # type: ignore[attr-defined]
            return
        source = entry[0]
        source.add_done_callback(lambda _f: ar._deliver(index, self._replies.get(msg_id)))  # type: ignore[attr-defined]

    def _poll_hub(self, ar: AsyncResult, interval: float = 0.1) -> None:
        todo = dict(enumerate(ar._msg_ids))
        while todo:
            try:
                msg = self._query("result_request", {"msg_ids": list(todo.values()), "status_only": False})  # type: ignore[attr-defined]
            except Exception as exc:
                ar._fail(exc)
                return
            content = msg["content"]
            records = _split_records(content, msg["buffers"])
            for index, msg_id in list(todo.items()):
                if msg_id in records:
                    md = self.metadata.setdefault(msg_id, _md_from_record(msg_id, content[msg_id]))  # type: ignore[attr-defined]
                    md.setdefault("msg_id", msg_id)
                    self._replies[msg_id] = records[msg_id]  # type: ignore[attr-defined]
                    ar._deliver(index, records[msg_id])
                    del todo[index]
            if todo:
                time.sleep(interval)

    def resubmit(
        self,
        indices_or_msg_ids: Any = None,
        subheader: dict[str, Any] | None = None,
        block: bool | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> AsyncResult:
        """Run finished tasks again (default: the last one), from the requests the controller kept.

        Each runs as a new task (a new msg_id; the original's result stays) through the load-balanced
        scheduler, with its original flags; ``subheader`` / ``metadata`` (ipyparallel's name) override
        load-balancing flags, e.g. ``{"targets": [2], "retries": 1}``. Returns an AsyncHubResult for the
        new tasks, whose ``get()`` is a list of their results (waited for when ``block``).
        """
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        msg_ids = self._jobs_to_msg_ids(indices_or_msg_ids)  # type: ignore[attr-defined]
        if not msg_ids:
            raise ValueError("nothing to resubmit: pass msg_ids, AsyncResults or history indices")
        flags = _resubmit_flags(self, {**(subheader or {}), **(metadata or {})})
        new_ids = [self._new_msg_id() for _ in msg_ids]  # type: ignore[attr-defined]
        ar = AsyncHubResult(self, new_ids, fname="resubmit")  # type: ignore[arg-type]
        # expect the replies before asking: the controller sends them to this client as soon as they come
        now = wire.utcnow()
        for i, new_id in enumerate(new_ids):
            self.metadata[new_id] = Metadata(msg_id=new_id, submitted=now)  # type: ignore[attr-defined]
            self._pending[new_id] = (ar, i)  # type: ignore[attr-defined]
            self.outstanding.add(new_id)  # type: ignore[attr-defined]
        content = {"msg_ids": msg_ids, "new_msg_ids": new_ids, "metadata": flags}
        try:
            self._query("resubmit_request", content)  # type: ignore[attr-defined]
        except BaseException as exc:
            for new_id in new_ids:
                self._pending.pop(new_id, None)  # type: ignore[attr-defined]
                self.outstanding.discard(new_id)  # type: ignore[attr-defined]
                self.metadata.pop(new_id, None)  # type: ignore[attr-defined]
            if isinstance(exc, error.RemoteError):
                raise _hub_error(exc) from None
            raise
        self._io.expect_replies(clientio.TASK, len(new_ids))  # type: ignore[attr-defined]  # io.call_blocking
        self.history.extend(new_ids)  # type: ignore[attr-defined]
        self._retention.track(ar, new_ids)  # type: ignore[attr-defined]
        if self.block if block is None else block:
            ar.wait()
        return ar


_DATE_KEYS = frozenset(("submitted", "started", "completed", "received"))


def _hub_error(exc: error.RemoteError) -> error.RemoteError:
    """The controller's refusal as a RemoteError (what the seed and ipyparallel raise) that is also the
    builtin it names, so ``except KeyError`` (unknown ids) and ``except ValueError`` (in flight) work too."""
    base = getattr(builtins, exc.ename, None)
    if base not in (KeyError, ValueError, TypeError, RuntimeError):
        return exc
    cls = type(f"Remote{exc.ename}", (_HubRefusal, base), {})
    return cls(exc.ename, exc.evalue, exc.traceback, exc.engine_info)


class _HubRefusal(error.RemoteError):
    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}"


_RESUBMIT_FLAGS = ("after", "follow", "retries", "timeout", "targets")


def _resubmit_flags(client: Any, overrides: dict[str, Any]) -> dict[str, Any]:
    """Load-balancing flags for resubmitted tasks in wire form, checked like ``LoadBalancedView.set_flags``;
    a flag set to None (or 0) clears the original task's."""
    unknown = [k for k in overrides if k not in _RESUBMIT_FLAGS]
    if unknown:
        raise KeyError(
            f"can't set {', '.join(map(repr, unknown))} when resubmitting: "
            f"the flags a resubmitted task takes are {', '.join(_RESUBMIT_FLAGS)}"
        )
    from .lbview import LoadBalancedView

    given = dict(overrides)
    targets = given.pop("targets", None)
    flags: dict[str, Any] = dict.fromkeys(overrides)
    flags.update(LoadBalancedView(client, **given)._task_metadata() or {})
    if targets is not None:
        flags["targets"] = client._build_targets(targets)[1]
    return flags


def _split_records(content: dict[str, Any], buffers: list[Any]) -> dict[str, dict[str, Any]]:
    """Reply messages rebuilt from a result_reply: {msg_id: {content, metadata, buffers, msg_type}}."""
    out = {}
    offset = 0
    for msg_id in content.get("completed", []):
        rec = content.get(msg_id)
        if not isinstance(rec, dict):
            continue
        count = int(rec.get("buffer_count") or 0)
        header = rec.get("result_header") or {}
        out[msg_id] = {
            "msg_type": header.get("msg_type", "apply_reply"),
            "header": header,
            "metadata": rec.get("result_metadata") or {},
            "content": rec.get("result_content") or {},
            "buffers": list(buffers[offset : offset + count]),
        }
        offset += count
    return out


def _records_to_results(content: dict[str, Any], buffers: list[Any]) -> dict[str, Any]:
    from ipcluster.error import TaskAborted, unwrap_exception

    results: dict[str, Any] = {}
    for msg_id, rec in _split_records(content, buffers).items():
        status = rec["content"].get("status")
        if status == "ok":
            results[msg_id] = wire.deserialize_object(rec["buffers"]) if rec["buffers"] else None
        elif status == "aborted":
            results[msg_id] = TaskAborted(msg_id)
        else:
            results[msg_id] = unwrap_exception(rec["content"])
    return results


def _md_from_record(msg_id: str, rec: dict[str, Any]) -> Any:
    from .metadata import Metadata

    rmd = rec.get("result_metadata") or {}
    header = rec.get("header") or {}
    return Metadata(
        msg_id=msg_id,
        submitted=wire.parse_date(header.get("date")),
        started=wire.parse_date(rmd.get("started")),
        completed=wire.parse_date(rmd.get("completed")),
        received=wire.utcnow(),
        engine_id=rmd.get("engine_id"),
        engine_uuid=rmd.get("engine_uuid"),
        status=(rec.get("result_content") or {}).get("status"),
        stdout=rec.get("stdout") or "",
        stderr=rec.get("stderr") or "",
        execute_result=rec.get("execute_result"),
    )
