"""Replies the controller writes itself on behalf of an engine: EngineError, ImpossibleDependency, ...

They look exactly like an engine's error reply (docs/protocol.md §8), with the request header as
parent_header, so the client handles them like any other failed task.
"""

from __future__ import annotations

from typing import Any

import zmq

from ipcluster.wire import Session, now_iso


def reply_type(request_type: str) -> str:
    return request_type[: -len("_request")] + "_reply" if request_type.endswith("_request") else "apply_reply"


def error_content(
    ename: str, evalue: str, request_type: str, engine_id: int | None = None, engine_uuid: str | None = None
) -> dict[str, Any]:
    method = request_type[: -len("_request")] if request_type.endswith("_request") else request_type
    return {
        "status": "error",
        "ename": ename,
        "evalue": evalue,
        "traceback": [],
        "engine_info": {"engine_id": engine_id, "engine_uuid": engine_uuid, "method": method},
    }


def send_error_reply(
    session: Session,
    sock: zmq.Socket,
    client_id: bytes,
    request_header: dict[str, Any],
    ename: str,
    evalue: str,
    engine_id: int | None = None,
    engine_uuid: str | None = None,
) -> dict[str, Any]:
    """Send an error reply for ``request_header`` to ``client_id``; returns the message sent.

    The caller pokes the socket's reader afterwards (wire.SocketReader).
    """
    request_type = request_header.get("msg_type", "apply_request")
    content = error_content(ename, evalue, request_type, engine_id, engine_uuid)
    now = now_iso()
    metadata = {
        "status": "error",
        "engine_id": engine_id,
        "engine_uuid": engine_uuid,
        "started": None,
        "completed": now,
        "iopub_count": 0,
        "dependencies_met": True,
    }
    return session.send(
        sock, reply_type(request_type), content, parent=request_header, metadata=metadata, idents=[client_id]
    )
