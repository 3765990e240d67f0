"""Running user code: the persistent namespace, apply and execute requests, errors and output.

The kernel does no socket reading: the engine loop hands it verified messages and sends what it
returns on the socket the request came in on. It owns the iopub PUB (shared with the output flusher
thread, hence the lock) and counts what it publishes per request for the reply's ``iopub_count``.
"""

from __future__ import annotations

import ast
import builtins
import linecache
import os
import sys
import threading
from collections import deque
from typing import Any

import zmq

from ipcluster import wire
from ipcluster.error import UnmetDependency, wrap_exception

from .iostream import Flusher, OutStream

_ENGINE_DIR = os.path.dirname(os.path.abspath(__file__))
_WIRE_DIR = os.path.dirname(os.path.abspath(wire.__file__))
_KEEP_SOURCES = 256  # execute cells whose source stays in linecache for tracebacks

# What happens in user code and becomes an error reply. Anything else (the engine's own exit on
# SIGTERM) passes through.
USER_ERRORS = (Exception, KeyboardInterrupt, SystemExit)

Reply = tuple[str, dict[str, Any], dict[str, Any], list[Any]]  # msg_type, content, metadata, buffers


def _new_namespace() -> dict[str, Any]:
    return {"__name__": "__main__", "__builtins__": builtins}


def _trim_traceback(exc: BaseException) -> BaseException:
    """Drop the engine's own frames from the top of a traceback, so users see only their code."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not (filename.startswith(_ENGINE_DIR) or filename.startswith(_WIRE_DIR)):
            break
        tb = tb.tb_next
    return exc.with_traceback(tb)


class Kernel:
    """Executes requests in ``user_ns`` and publishes their output and errors on iopub."""

    def __init__(self, session: wire.Session, iopub: zmq.Socket, engine_id: int, engine_uuid: str) -> None:
        self.session = session
        # Output is published from other threads too (the flusher, user threads): a Session of its own keeps
        # msg ids unique without locking the shell replies' session.
        self.iopub_session = wire.Session(
            session.key, session.signature_scheme, session=session.session, username=session.username
        )
        self.iopub = iopub
        self._iopub_closed = False
        self.engine_id = engine_id
        self.engine_uuid = engine_uuid
        self.user_ns: dict[str, Any] = _new_namespace()
        self.functions = wire.FunctionCache()
        self.iopub_count = 0
        self.parent: dict[str, Any] = {}
        self._iopub_lock = threading.Lock()
        self._topic_prefix = f"engine.{engine_id}.".encode("ascii")
        self._md_base = {"engine_id": engine_id, "engine_uuid": engine_uuid}
        self._cells = 0
        self._cell_names: deque[str] = deque()
        self.flusher = Flusher()
        self.stdout = OutStream("stdout", self.publish, self.flusher)
        self.stderr = OutStream("stderr", self.publish, self.flusher)
        self.flusher.streams = [self.stdout, self.stderr]
        self._saved_streams: tuple[Any, Any] | None = None

    # -- output -------------------------------------------------------------------------------------

    def install_streams(self) -> None:
        """Route sys.stdout/sys.stderr to iopub for the engine's life (until restore_streams)."""
        self._saved_streams = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = self.stdout, self.stderr
        self.flusher.start()

    def restore_streams(self) -> None:
        """Put the original streams back first (so a failure below still reaches a terminal), then flush."""
        if self._saved_streams is not None:
            sys.stdout, sys.stderr = self._saved_streams
            self._saved_streams = None
        self.flusher.stop()
        if self.flusher.is_alive():
            self.flusher.join(5)
        for stream in (self.stdout, self.stderr):
            try:
                stream.flush()
            except zmq.ZMQError:
                pass

    def publish(self, msg_type: str, content: dict[str, Any], parent: dict[str, Any]) -> None:
        """Send one iopub message (any thread); counted for the running request's iopub_count."""
        with self._iopub_lock:
            if self._iopub_closed:
                return
            self.iopub_session.send(
                self.iopub, msg_type, content, parent=parent, idents=(self._topic_prefix + msg_type.encode(),)
            )
            self.iopub_count += 1

    def close_iopub(self) -> None:
        """Close the iopub socket; output written afterwards (by a lingering user thread) is dropped."""
        with self._iopub_lock:
            self._iopub_closed = True
            self.iopub.close()

    def _begin(self, header: dict[str, Any]) -> None:
        self.parent = header
        self.stdout.parent_header = header
        self.stderr.parent_header = header
        with self._iopub_lock:
            self.iopub_count = 0

    def _finish(self) -> int:
        self.stdout.flush()
        self.stderr.flush()
        with self._iopub_lock:
            return self.iopub_count

    # -- requests -----------------------------------------------------------------------------------

    def run(self, msg: dict[str, Any]) -> Reply:
        """Run an apply_request or execute_request; the reply to send, whatever the user code did."""
        header = msg["header"]
        msg_type = msg["msg_type"]
        self._begin(header)
        started = wire.now_iso()
        buffers: list[Any] = []
        met = True
        try:
            if msg_type == "apply_request":
                buffers = self._apply(msg)
                reply_type = "apply_reply"
            else:
                self._execute(msg["content"])
                reply_type = "execute_reply"
            content: dict[str, Any] = {"status": "ok"}
        except USER_ERRORS as exc:
            reply_type = "apply_reply" if msg_type == "apply_request" else "execute_reply"
            content = self._error_content(exc, "apply" if msg_type == "apply_request" else "execute")
            met = not (isinstance(exc, UnmetDependency) or type(exc).__name__ == "UnmetDependency")
            self.publish(
                "error", {k: content[k] for k in ("ename", "evalue", "traceback", "engine_info")}, header
            )
            buffers = []
        count = self._finish()
        metadata = {
            **self._md_base,
            "started": started,
            "completed": wire.now_iso(),
            "status": content["status"],
            "iopub_count": count,
            "dependencies_met": met,
        }
        return reply_type, content, metadata, buffers

    def _apply(self, msg: dict[str, Any]) -> list[Any]:
        f, args, kwargs = wire.unpack_apply_message(msg["buffers"], cache=self.functions)
        ns = self.user_ns
        if wire.is_interactive(f):
            f = wire.bind_to_namespace(f, ns)
        args, kwargs = wire.resolve_references(args, kwargs, ns)
        return wire.serialize_object(f(*args, **kwargs))

    def _execute(self, content: dict[str, Any]) -> None:
        """Run a cell; the value of a final expression (if not None) goes out as ``execute_result``."""
        code = content.get("code")
        if not isinstance(code, str):
            raise TypeError(f"execute_request needs code as a string, not {type(code).__name__}")
        self._cells += 1
        filename = f"<execute-{self._cells}>"
        self._remember_source(filename, code)
        tree = ast.parse(code, filename)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        ns = self.user_ns
        if tree.body:
            exec(compile(tree, filename, "exec"), ns)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), filename, "eval"), ns)
            if value is not None:
                self._publish_result(value)

    def _publish_result(self, value: Any) -> None:
        """The seed's ``pyout`` (Jupyter's ``execute_result``), after the cell's printed output."""
        self.user_ns["_"] = value
        try:
            text = repr(value)
        except Exception as exc:  # the cell ran: a broken __repr__ must not turn it into an error
            text = f"<{type(value).__name__} object; repr() failed: {type(exc).__name__}: {exc}>"
        self.stdout.flush()
        self.stderr.flush()
        content = {"execution_count": self._cells, "data": {"text/plain": text}, "metadata": {}}
        self.publish("execute_result", content, self.parent)

    def _remember_source(self, filename: str, code: str) -> None:
        """Keep the cell's source where tracebacks look for it, for the last few cells."""
        linecache.cache[filename] = (len(code), None, code.splitlines(keepends=True), filename)
        self._cell_names.append(filename)
        if len(self._cell_names) > _KEEP_SOURCES:
            linecache.cache.pop(self._cell_names.popleft(), None)

    def _error_content(self, exc: BaseException, method: str) -> dict[str, Any]:
        info = {**self._md_base, "method": method}
        return wrap_exception(_trim_traceback(exc), info)

    def aborted(self, msg: dict[str, Any]) -> Reply:
        """The reply for a request aborted before it ran."""
        msg_type = msg["msg_type"]
        reply_type = (
            msg_type[: -len("_request")] + "_reply" if msg_type.endswith("_request") else "apply_reply"
        )
        now = wire.now_iso()
        metadata = {
            **self._md_base,
            "started": None,
            "completed": now,
            "status": "aborted",
            "iopub_count": 0,
            "dependencies_met": True,
        }
        return reply_type, {"status": "aborted"}, metadata, []

    def clear(self) -> None:
        """Empty the user namespace in place (functions bound to it keep seeing the same dict)."""
        self.user_ns.clear()
        self.user_ns.update(_new_namespace())
