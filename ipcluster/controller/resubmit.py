"""``resubmit_request``: run finished tasks again, from the requests kept in their records.

Each resubmitted task is a new task (a new msg_id, the original's record left as it was, apart from its
``resubmitted`` field naming the new id), re-signed by the controller and sent through the load-balancing
scheduler with the original request's metadata (dependencies, retries, targets...), merged with any
metadata the request gives. Its reply goes to the client that asked. Direct (mux) tasks are resubmitted the
same way, so they run on whichever engine the scheduler picks, as in the seed and ipyparallel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from ipcluster.wire import DELIM, Session, now_iso

if TYPE_CHECKING:
    from .hub import Hub

RESUBMITTABLE = ("apply_request", "execute_request")


class ResubmitError(Exception):
    """A resubmit_request the controller refuses; ``ename`` is the error class the client raises."""

    def __init__(self, ename: str, evalue: str) -> None:
        super().__init__(evalue)
        self.ename = ename
        self.evalue = evalue


def why_not(msg_id: str, record: dict[str, Any]) -> str:
    """Why this record's task cannot run again ("" when it can)."""
    header = record.get("header") or {}
    if not record.get("completed"):
        return f"Task {msg_id} appears to be inflight: wait for it to finish, then resubmit it"
    if header.get("msg_type") not in RESUBMITTABLE:
        return f"Task {msg_id} is a {header.get('msg_type')!r}: only apply and execute requests can be resubmitted"
    if any(entry is not None for entry in header.get("shm") or ()):
        return (
            f"Task {msg_id} cannot be resubmitted: its buffers were passed through shared memory and are gone; "
            "submit it again"
        )
    if record.get("buffers_dropped"):
        return (
            f"Task {msg_id} cannot be resubmitted: the controller dropped its request buffers to stay within "
            "--task-retention-bytes; submit it again, or raise --task-retention-bytes"
        )
    if record.get("buffers") is None:
        return (
            f"Task {msg_id} cannot be resubmitted: the controller did not keep its request; submit it again"
        )
    return ""


def _ids(content: dict[str, Any]) -> list[str]:
    msg_ids = content.get("msg_ids")
    if isinstance(msg_ids, str):
        msg_ids = [msg_ids]
    if not isinstance(msg_ids, list) or not msg_ids or not all(isinstance(m, str) for m in msg_ids):
        raise ResubmitError("TypeError", "resubmit_request needs msg_ids: a non-empty list of msg_id strings")
    if len(set(msg_ids)) != len(msg_ids):
        raise ResubmitError("ValueError", "resubmit_request lists a msg_id twice: resubmit each task once")
    return msg_ids


def _new_ids(hub: Hub, content: dict[str, Any], n: int) -> list[str]:
    """The ids the client chose for the new tasks (so it can expect their replies), or fresh ones."""
    wanted = content.get("new_msg_ids")
    if wanted is None:
        return [hub.session.new_msg_id() for _ in range(n)]
    if (
        not isinstance(wanted, list)
        or len(wanted) != n
        or not all(isinstance(m, str) and m for m in wanted)
        or len(set(wanted)) != n
    ):
        raise ResubmitError("ValueError", "new_msg_ids must be a list of distinct msg_ids, one per msg_id")
    jobs = hub.scheduler.jobs if hub.scheduler is not None else {}
    taken = [m for m in wanted if m in jobs or hub.db.get(m) is not None]
    if taken:
        raise ResubmitError("ValueError", f"new_msg_ids already in use: {', '.join(taken)}")
    return wanted


def build_request(
    session: Session, record: dict[str, Any], new_id: str, metadata: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    """(frames from the delimiter on, message dict) of the record's request as a new task, signed here.

    The buffers are the stored frames; the header keeps their digests, so they are not hashed again.
    """
    header = {k: v for k, v in record["header"].items() if k != "shm"}
    header["msg_id"] = new_id
    header["date"] = now_iso()
    content = record.get("content") or {}
    buffers = list(record.get("buffers") or ())
    parts = [orjson.dumps(header), b"{}", orjson.dumps(metadata), orjson.dumps(content)]
    frames = [DELIM, session.signer.sign(parts), *parts, *buffers]
    msg = {
        "header": header,
        "msg_id": new_id,
        "msg_type": header["msg_type"],
        "parent_header": {},
        "metadata": metadata,
        "content": content,
        "buffers": buffers,
    }
    return frames, msg


def resubmit(hub: Hub, client_id: bytes, content: dict[str, Any]) -> dict[str, Any]:
    """Resubmit every task of ``content['msg_ids']`` (all or none); the reply content, or ResubmitError."""
    msg_ids = _ids(content)
    overrides = content.get("metadata") or {}
    if not isinstance(overrides, dict):
        raise ResubmitError("TypeError", "resubmit_request metadata must be a dict (retries, targets, ...)")
    if hub.scheduler is None:
        raise ResubmitError("RuntimeError", "this controller has no task scheduler to resubmit through")
    records = {m: hub.db.get(m) for m in msg_ids}
    missing = [m for m, rec in records.items() if rec is None]
    if missing:
        raise ResubmitError("KeyError", f"No such msg(s): {', '.join(missing)} (never submitted, or purged)")
    for msg_id, rec in records.items():
        reason = why_not(msg_id, rec)  # type: ignore[arg-type]
        if reason:
            raise ResubmitError("ValueError", reason)
    new_ids = _new_ids(hub, content, len(msg_ids))
    resubmitted: dict[str, str] = {}
    for msg_id, new_id in zip(msg_ids, new_ids, strict=True):
        rec = records[msg_id]
        metadata = {**(rec.get("metadata") or {}), **overrides}  # type: ignore[union-attr]
        frames, msg = build_request(hub.session, rec, new_id, metadata)  # type: ignore[arg-type]
        hub.scheduler.accept_task(client_id, frames, msg)
        hub.db.update_record(msg_id, {"resubmitted": new_id})
        resubmitted[msg_id] = new_id
    return {"status": "ok", "resubmitted": resubmitted}
