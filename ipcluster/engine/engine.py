"""The engine process after registration: its sockets, the request loop, control and shutdown.

One thread (the main one) owns the mux, task, control and iopub sockets and runs user code inline, driven
by a zmq.Poller: no event loop and no thread handoff between a request arriving and its function being
called. Control messages are serviced before every shell request, so abort and shutdown overtake queued
work. The heart beats in its own thread (heart.py).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import zmq

from ipcluster import wire
from ipcluster.error import WireError
from ipcluster.wire import shm

from .heart import Heart
from .kernel import Kernel
from .registration import unregister
from .rejoin import Rejoiner

log = logging.getLogger("ipcluster.engine")

EXIT_OK = 0
EXIT_CONTROLLER_GONE = 3

_ABORT_MEMORY = 10000  # ids of aborted requests that have not arrived yet
_zmq_poll = zmq.backend.zmq_poll  # the backend poll: [(socket, events)], timeout ms (-1: forever)
_POLLIN = int(zmq.POLLIN)
_CONNECT_WAIT = 5.0  # seconds to wait for the shell sockets' handshakes before starting the heart


class _Terminate(BaseException):
    """Raised by the SIGTERM handler to leave the loop (even mid user code) and exit cleanly."""


class _Shutdown(Exception):
    """A shutdown_request was answered: leave the loop."""


@dataclass
class EngineUrls:
    """Where each engine socket connects (already tunnelled when --ssh is used)."""

    registration: str
    mux: str
    task: str
    control: str
    iopub: str
    hb_ping: str
    hb_pong: str


class Engine:
    """A registered engine: serves requests until shutdown, SIGTERM, or the controller going away."""

    def __init__(
        self,
        context: zmq.Context,
        session: wire.Session,
        urls: EngineUrls,
        registration_socket: zmq.Socket,
        engine_id: int,
        engine_uuid: str,
        heartbeat_timeout_ms: float,
        controller_url: str,
        hb_period_ms: float = 0.0,
        hb_misses: int = 0,
        first_nonce: bytes | None = None,
    ) -> None:
        self.context = context
        self.session = session
        self.urls = urls
        self.registration = registration_socket
        self.engine_id = engine_id
        self.engine_uuid = engine_uuid
        self.heartbeat_timeout_ms = heartbeat_timeout_ms
        self.controller_url = controller_url
        self.pending: deque[tuple[zmq.Socket, list[bytes], dict[str, Any]]] = deque()
        self.aborted_ids: OrderedDict[str, None] = OrderedDict()
        self.complaints = wire.RateLimitedLog(log)
        ident = engine_uuid.encode("ascii")
        self.mux = self._dealer(ident)
        self.task = self._dealer(ident)
        self.control = self._dealer(ident)
        self.iopub = context.socket(zmq.XPUB)
        self.iopub.setsockopt(zmq.LINGER, 1000)
        self.kernel = Kernel(session, self.iopub, engine_id, engine_uuid)
        self.shm_probe = shm.advertise(engine_uuid)  # clients on this host may now map big buffers to us
        self.shm_out = shm.ShmExporter(engine_uuid[:12])  # and we may answer them the same way
        self.rejoiner: Rejoiner | None = None
        if hb_period_ms and hb_misses:
            window_s = hb_misses * hb_period_ms / 1000
            self.rejoiner = Rejoiner(
                context, session, urls.registration, engine_uuid, engine_id, window_s, self._controller_gone
            )
        self.heart = Heart(
            context,
            urls.hb_ping,
            urls.hb_pong,
            ident,
            session.signer,
            heartbeat_timeout_ms,
            self._controller_gone,
            gap_ms=2 * hb_period_ms,
            on_gap=self.rejoiner.gap if self.rejoiner else None,
            first_nonce=first_nonce,
        )

    def _dealer(self, ident: bytes) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.IDENTITY, ident)
        sock.setsockopt(zmq.LINGER, 1000)
        return sock

    # -- start and stop -----------------------------------------------------------------------------

    def connect(self) -> None:
        """Connect the shell, control and iopub sockets, then start the heart.

        The controller completes our registration on the first pong and may route a request to us at
        once (its engine-facing ROUTERs are ROUTER_MANDATORY), so the handshakes, and the controller's
        iopub subscription, are awaited before the heart starts beating.
        """
        shell = [(self.mux, self.urls.mux), (self.task, self.urls.task), (self.control, self.urls.control)]
        monitors = [sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED) for sock, _ in shell]
        for sock, url in shell:
            sock.connect(url)
        self.iopub.connect(self.urls.iopub)
        t0 = time.monotonic()
        _wait_for_handshakes(monitors, _CONNECT_WAIT)
        for sock, _ in shell:
            sock.disable_monitor()
        for mon in monitors:
            mon.close(0)
        # The iopub socket is an XPUB: the controller's subscription arriving is the sign that output
        # published from now on reaches it (a PUB silently drops what it sends before that).
        if self.iopub.poll(max(0.0, _CONNECT_WAIT - (time.monotonic() - t0)) * 1000):
            self.iopub.recv()
        else:
            log.warning(
                "the controller has not subscribed to this engine's output yet; early output may be lost"
            )
        self.heart.start()

    def _controller_gone(self) -> None:
        """Called from the heart thread: the process ends here, with status 3."""
        log.error("controller at %s stopped answering heartbeats; exiting", self.controller_url)
        shm.withdraw(self.shm_probe)
        for handler in logging.getLogger("ipcluster").handlers:
            try:
                handler.flush()
            except Exception:
                pass
        os._exit(EXIT_CONTROLLER_GONE)

    def serve(self) -> int:
        """Run until shutdown_request or SIGTERM; returns the exit status.

        Either way the engine tells the controller it is leaving (best effort), flushes its output and
        closes its sockets; a second SIGTERM during that short cleanup is ignored.
        """
        signal.signal(signal.SIGTERM, _raise_terminate)
        self.kernel.install_streams()
        try:
            self._loop()
        except _Shutdown:
            log.info("engine %d shutting down on request", self.engine_id)
        except (_Terminate, KeyboardInterrupt):
            log.info("engine %d exiting on signal", self.engine_id)
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            self.kernel.restore_streams()
            unregister(self.session, self.registration, self.engine_id)
            self.close()
        return EXIT_OK

    def close(self) -> None:
        shm.withdraw(self.shm_probe)
        self.heart.stop()
        if self.rejoiner is not None:
            self.rejoiner.close()
        self.kernel.close_iopub()
        for sock in (self.mux, self.task, self.control, self.registration):
            sock.close()
        if self.heart.is_alive():
            self.heart.join(5)

    # -- the loop -----------------------------------------------------------------------------------

    def _loop(self) -> None:
        """Control first, then requests already pending, then mux and task alternately (so neither starves
        the other). One zmq poll per request says what is waiting where (it returns at once when something
        is, and blocks when nothing is): reading each socket's EVENTS instead costs three option lookups
        per turn, a turn more per request."""
        control, mux, task = self.control, self.mux, self.task
        pollin = _POLLIN
        everything = [(control, pollin), (mux, pollin), (task, pollin)]
        control_only = everything[:1]
        pending = self.pending
        last = task
        while True:
            if pending:
                if _zmq_poll(control_only, 0):
                    self._drain_control()
                else:
                    self._run(*pending.popleft())
                continue
            ready = [sock for sock, _ in _zmq_poll(everything, -1)]
            if control in ready:
                self._drain_control()
                continue
            if mux in ready:
                shell = task if task in ready and last is mux else mux
            elif task in ready:
                shell = task
            else:
                continue
            last = shell
            self._on_shell(shell, wire.recv_frames(shell))

    def _parse(self, sock_name: str, frames: list[Any]) -> tuple[list[bytes], dict[str, Any]] | None:
        try:
            idents, rest = wire.feed_identities(frames)
            msg = self.session.deserialize(rest, check_buffers=False)
        except WireError as exc:
            self.complaints.warning(sock_name, "dropped a bad message on the %s socket: %s", sock_name, exc)
            return None
        if msg["buffers"]:
            try:
                shm.attach(msg["header"], msg["buffers"])
                self.session.check_buffers(msg["header"], msg["buffers"])
            except shm.ShmError as exc:
                self._reply_bad_buffer(
                    sock_name, idents, msg, f"{exc}: resend it", "shared-memory buffer is unreadable"
                )
                return None
            except WireError as exc:
                self._reply_bad_buffer(
                    sock_name,
                    idents,
                    msg,
                    f"{exc}: an argument (a numpy array?) was modified while it was being sent; do not "
                    "modify what you pass to a call until its result is back, or pass track=True",
                    "buffer changed",
                )
                return None
        return idents, msg

    def _reply_bad_buffer(
        self, sock_name: str, idents: list[bytes], msg: dict[str, Any], evalue: str, what: str
    ) -> None:
        """The header is authentic but a buffer is not what was signed (the sender modified an array while
        it was sent zero-copy) or a shared-memory buffer cannot be mapped. Answer an error, so the caller
        sees why instead of waiting."""
        self.complaints.warning(sock_name, "answered an error to a request whose %s: %s", what, evalue)
        msg_type = msg["msg_type"]
        if not msg_type.endswith("_request"):
            return
        sock = {"mux": self.mux, "task": self.task, "control": self.control}[sock_name]
        info = {"engine_id": self.engine_id, "engine_uuid": self.engine_uuid, "method": msg_type[:-8]}
        content = {
            "status": "error",
            "ename": "SerializationError",
            "evalue": evalue,
            "traceback": [],
            "engine_info": info,
        }
        now = wire.now_iso()
        metadata = {**info, "started": now, "completed": now, "status": "error", "iopub_count": 0}
        metadata["dependencies_met"] = True
        reply_type = msg_type[: -len("_request")] + "_reply"
        self.session.send(sock, reply_type, content, msg["header"], metadata, idents=idents)

    def _on_shell(self, sock: zmq.Socket, frames: list[Any]) -> None:
        parsed = self._parse("mux" if sock is self.mux else "task", frames)
        if parsed is not None:
            self._run(sock, *parsed)

    def _run(self, sock: zmq.Socket, idents: list[bytes], msg: dict[str, Any]) -> None:
        msg_type = msg["msg_type"]
        if self.aborted_ids and msg["msg_id"] in self.aborted_ids:
            del self.aborted_ids[msg["msg_id"]]
            reply = self.kernel.aborted(msg)
        elif msg_type == "apply_request" or msg_type == "execute_request":
            reply = self.kernel.run(msg)
        else:
            self._reply_unknown(sock, idents, msg)
            return
        reply_type, content, metadata, buffers = reply
        if buffers and self._reply_through_shm(
            sock, reply_type, content, msg["header"], metadata, buffers, idents
        ):
            return
        self.session.send(sock, reply_type, content, msg["header"], metadata, buffers, idents)

    def _reply_through_shm(
        self,
        sock: zmq.Socket,
        reply_type: str,
        content: dict[str, Any],
        parent: dict[str, Any],
        metadata: dict[str, Any],
        buffers: list[Any],
        idents: list[bytes],
    ) -> bool:
        """Send a big result to a client on this host through shared memory (docs/protocol.md §1.1); the
        client removes the files. False when that client does not take it."""
        out = self.shm_out
        if not out.enabled or not idents:
            return False
        # the client's session: a sync lane's identity is <session>.<n> (docs/protocol.md §2)
        client = out.client_threshold(idents[0].split(b".", 1)[0].decode("ascii", "replace"))
        if client is None or not out.wants(buffers, client[1]):
            return False
        pid, threshold = client
        exported = out.export_while(buffers, lambda: self.session.digests(buffers), pid, threshold)
        if exported is None:
            return False
        (frames, entries), digests = exported
        try:
            self.session.send(
                sock, reply_type, content, parent, metadata, frames, idents, digests=digests, shm=entries
            )
        except zmq.ZMQError:
            out.discard(entries)
            raise
        return True

    def _reply_unknown(self, sock: zmq.Socket, idents: list[bytes], msg: dict[str, Any]) -> None:
        msg_type = msg["msg_type"]
        self.complaints.warning(
            ("unknown", msg_type), "unknown message type %r; answering an error", msg_type
        )
        if not msg_type.endswith("_request"):
            return
        content = {
            "status": "error",
            "ename": "ValueError",
            "evalue": f"engine {self.engine_id} does not handle {msg_type!r} on this socket",
            "traceback": [],
            "engine_info": {"engine_id": self.engine_id, "engine_uuid": self.engine_uuid, "method": msg_type},
        }
        self.session.send(
            sock, msg_type[: -len("_request")] + "_reply", content, msg["header"], idents=idents
        )

    # -- control ------------------------------------------------------------------------------------

    def _drain_control(self) -> None:
        control = self.control
        while control.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            parsed = self._parse("control", control.recv_multipart(zmq.NOBLOCK, copy=False))
            if parsed is not None:
                self._on_control(*parsed)

    def _on_control(self, idents: list[bytes], msg: dict[str, Any]) -> None:
        msg_type = msg["msg_type"]
        content = msg["content"]
        if msg_type == "abort_request":
            msg_ids = content.get("msg_ids")
            self._abort(None if msg_ids is None else [str(m) for m in msg_ids])
            reply: dict[str, Any] = {"status": "ok"}
        elif msg_type == "clear_request":
            self.kernel.clear()
            reply = {"status": "ok"}
        elif msg_type == "shutdown_request":
            self._abort(None)
            reply = {"status": "ok", "restart": bool(content.get("restart", False))}
            self.session.send(self.control, "shutdown_reply", reply, msg["header"], idents=idents)
            raise _Shutdown()
        else:
            self._reply_unknown(self.control, idents, msg)
            return
        self.session.send(
            self.control, msg_type[: -len("_request")] + "_reply", reply, msg["header"], idents=idents
        )

    def _abort(self, msg_ids: list[str] | None) -> None:
        """Abort queued requests: those named, or all that have arrived when msg_ids is None.

        Named requests that have not arrived yet are remembered (a bounded number) and aborted on arrival.
        """
        self._take_queued()
        pending = self.pending  # mutated in place: the loop holds a reference to it
        if msg_ids is None:
            victims = list(pending)
            pending.clear()
        else:
            wanted = set(msg_ids)
            victims = [item for item in pending if item[2]["msg_id"] in wanted]
            kept = [item for item in pending if item[2]["msg_id"] not in wanted]
            pending.clear()
            pending.extend(kept)
            for msg_id in wanted.difference(item[2]["msg_id"] for item in victims):
                self.aborted_ids[msg_id] = None
                if len(self.aborted_ids) > _ABORT_MEMORY:
                    self.aborted_ids.popitem(last=False)
        for sock, idents, msg in victims:
            reply_type, content, metadata, buffers = self.kernel.aborted(msg)
            self.session.send(sock, reply_type, content, msg["header"], metadata, buffers, idents)

    def _take_queued(self) -> None:
        """Move every shell request already waiting on the sockets into the pending queue."""
        for sock, name in ((self.mux, "mux"), (self.task, "task")):
            while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                parsed = self._parse(name, sock.recv_multipart(zmq.NOBLOCK, copy=False))
                if parsed is not None:
                    self.pending.append((sock, *parsed))


def _raise_terminate(signum: int, frame: Any) -> None:
    raise _Terminate()


def _wait_for_handshakes(monitors: list[zmq.Socket], timeout: float) -> None:
    """Wait (bounded) until each monitored socket has completed a ZMTP handshake."""
    from zmq.utils.monitor import recv_monitor_message

    poller = zmq.Poller()
    for mon in monitors:
        poller.register(mon, zmq.POLLIN)
    waiting = set(monitors)
    remaining_ms = timeout * 1000
    while waiting and remaining_ms > 0:
        t0 = time.monotonic()
        for mon, _ in poller.poll(remaining_ms):
            event = recv_monitor_message(mon)
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                waiting.discard(mon)
                poller.unregister(mon)
        remaining_ms -= (time.monotonic() - t0) * 1000
    if waiting:
        log.warning("%d engine sockets did not finish connecting within %g s", len(waiting), timeout)
