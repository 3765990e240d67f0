"""The client's IO thread: it owns every socket, forwards outgoing frames and resolves replies.

User threads build and sign messages themselves and hand the frames over an inproc PUSH socket (one lock,
no pickling here). The thread polls the PULL end and the controller sockets, verifies what arrives and
hands each reply to the AsyncResult waiting for it, in batches, so the per-task cost stays a few
microseconds. A reply whose task printed output it has not seen yet is held until that output arrives
(the reply's ``iopub_count`` says how much to expect) or a short grace period passes.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from ipcluster import wire
from ipcluster.error import WireError
from ipcluster.wire import recv_frames, send_frames

log = logging.getLogger("ipcluster.client")

# channel tags on the inproc pipe
MUX, TASK, CONTROL, QUERY, STOP = b"m", b"t", b"c", b"q", b"x"
_SNDMORE = int(zmq.SNDMORE)
OUTPUT_GRACE = 1.0  # seconds a reply waits for output the engine says it published
BATCH = 1000


class ClientIO(threading.Thread):
    """One background thread per Client; ``handlers`` receives the verified messages.

    ``urls`` maps ``registration``, ``mux``, ``task``, ``control``, ``iopub``, ``notification`` to zmq urls
    (already tunnelled when SSH is used). All DEALERs use the session id as their identity.
    """

    def __init__(
        self,
        context: zmq.Context,
        session: wire.Session,
        urls: dict[str, str],
        on_reply: Callable[[dict[str, Any]], None],
        on_query_reply: Callable[[dict[str, Any] | None, str | None], None],
        on_iopub: Callable[[dict[str, Any]], None],
        on_notification: Callable[[dict[str, Any]], None],
        on_tick: Callable[[], float | None],
    ) -> None:
        super().__init__(name="ipcluster-client-io", daemon=True)
        self.context = context
        self.session = session
        self.urls = urls
        self.on_reply = on_reply
        self.on_query_reply = on_query_reply
        self.on_iopub = on_iopub
        self.on_notification = on_notification
        self.on_tick = on_tick
        self.pipe_url = f"inproc://ipcluster-client-{session.session}"
        self.ready = threading.Event()
        self.iopub_ready = threading.Event()
        self.startup_error: BaseException | None = None
        self._bad = wire.RateLimitedLog(log, 10.0)
        self._push_lock = threading.Lock()
        self._push: zmq.Socket | None = None
        self._outbox: deque[tuple[bytes, list[Any], bool]] = deque()
        self._signalled = False
        self._closing = False

    # -- user-thread side ----------------------------------------------------------------------------

    def start_and_wait(self, timeout: float = 10.0) -> None:
        self.start()
        if not self.ready.wait(timeout):
            raise RuntimeError("the client IO thread did not start")
        if self.startup_error is not None:
            raise self.startup_error
        push = self.context.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, 0)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(self.pipe_url)
        self._push = push

    def send(self, channel: bytes, frames: list[Any], copy: bool = True) -> None:
        """Queue one message (its frames, routing prefix included) for ``channel``; thread-safe.

        ``copy=False`` for messages with large buffers (sent zero-copy). The frames go into a deque; the
        IO thread is woken with one byte only when it is not already awake to drain it, so a burst of
        10,000 submissions costs 10,000 appends and a handful of wake-ups.
        """
        if self._closing:
            raise RuntimeError("this Client is closed: create a new one")
        self._outbox.append((channel, frames, copy))
        if not self._signalled:
            self._wake()

    def send_many(self, channel: bytes, messages: list[list[Any]], copy: bool = True) -> None:
        if self._closing:
            raise RuntimeError("this Client is closed: create a new one")
        append = self._outbox.append
        for frames in messages:
            append((channel, frames, copy))
        if not self._signalled:
            self._wake()

    def _wake(self) -> None:
        with self._push_lock:
            push = self._push
            if push is None:
                raise RuntimeError("this Client is closed: create a new one")
            self._signalled = True
            push.send(b"")

    def stop(self, timeout: float = 5.0) -> None:
        self._closing = True
        with self._push_lock:
            push, self._push = self._push, None
            if push is not None:
                try:
                    push.send(STOP)
                finally:
                    push.close(linger=1000)
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    # -- the thread ----------------------------------------------------------------------------------

    def _dealer(self, url: str) -> zmq.Socket:
        s = self.context.socket(zmq.DEALER)
        s.setsockopt(zmq.IDENTITY, self.session.bsession)
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(url)
        return s

    def _sub(self, url: str) -> zmq.Socket:
        s = self.context.socket(zmq.SUB)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SUBSCRIBE, b"")
        s.connect(url)
        return s

    def run(self) -> None:
        sockets: list[zmq.Socket] = []
        try:
            pull = self.context.socket(zmq.PULL)
            pull.setsockopt(zmq.RCVHWM, 0)
            pull.setsockopt(zmq.LINGER, 0)
            pull.bind(self.pipe_url)
            sockets.append(pull)
            out = {
                QUERY: self._dealer(self.urls["registration"]),
                MUX: self._dealer(self.urls["mux"]),
                TASK: self._dealer(self.urls["task"]),
                CONTROL: self._dealer(self.urls["control"]),
            }
            sockets.extend(out.values())
            iopub = self._sub(self.urls["iopub"])
            monitor = iopub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
            notification = self._sub(self.urls["notification"])
            sockets.extend([iopub, notification, monitor])
        except BaseException as exc:
            self.startup_error = exc
            self.ready.set()
            for s in sockets:
                s.close(0)
            return
        self.ready.set()
        try:
            self._loop(pull, out, iopub, notification, monitor)
        except Exception:
            log.exception("the client IO thread failed")
        finally:
            try:
                iopub.disable_monitor()
            except zmq.ZMQError:
                pass
            for s in sockets:
                s.close(0)

    def _loop(
        self,
        pull: zmq.Socket,
        out: dict[bytes, zmq.Socket],
        iopub: zmq.Socket,
        notification: zmq.Socket,
        monitor: zmq.Socket,
    ) -> None:
        poller = zmq.Poller()
        for s in (pull, *out.values(), iopub, notification, monitor):
            poller.register(s, zmq.POLLIN)
        query, mux, task, control = out[QUERY], out[MUX], out[TASK], out[CONTROL]
        reply_socks = (mux, task, control)
        timeout_ms: float | None = None
        while True:
            events = dict(poller.poll(timeout_ms))
            if pull in events:
                stop = False
                for _ in range(BATCH):
                    try:
                        signal = pull.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    if signal == STOP:
                        stop = True
                self._signalled = False
                self._flush_outbox(out)
                if stop:
                    return
            for sock in reply_socks:
                if sock in events:
                    self._drain(sock, self._handle_reply)
            if iopub in events:
                self._drain(iopub, self._handle_iopub)
            if query in events:
                self._drain(query, self._handle_query)
            if notification in events:
                self._drain(notification, self._handle_notification)
            if monitor in events:
                self._drain_monitor(monitor, poller)
            wait = self.on_tick()
            timeout_ms = None if wait is None else max(1, int(wait * 1000))

    def _flush_outbox(self, out: dict[bytes, zmq.Socket]) -> None:
        popleft = self._outbox.popleft
        while True:
            try:
                channel, frames, copy = popleft()
            except IndexError:
                return
            try:
                send_frames(out[channel], frames, copy)
            except zmq.ZMQError as exc:
                self._bad.warning(channel, "could not send a message: %s", exc)

    def _drain(self, sock: zmq.Socket, handle: Callable[[list[Any]], None]) -> None:
        for _ in range(BATCH):
            try:
                frames = recv_frames(sock)
            except zmq.Again:
                return
            try:
                handle(frames)
            except WireError as exc:
                self._bad.warning("controller", "dropped a message that failed verification: %s", exc)
            except Exception:
                log.exception("error handling a message from the controller")

    def _drain_monitor(self, monitor: zmq.Socket, poller: zmq.Poller) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while True:
            try:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:
                return
            if event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.iopub_ready.set()

    def _handle_reply(self, frames: list[Any]) -> None:
        self.on_reply(self.session.deserialize(_json_as_bytes(frames), check_buffers=True))

    def _handle_query(self, frames: list[Any]) -> None:
        rest = _json_as_bytes(frames)
        notice = wire.is_auth_error(rest)
        if notice is not None:
            self.on_query_reply(None, notice)
            return
        self.on_query_reply(self.session.deserialize(rest, check_buffers=True), None)

    def _handle_iopub(self, frames: list[Any]) -> None:
        self.on_iopub(self.session.deserialize(_json_as_bytes(frames), check_buffers=False))

    def _handle_notification(self, frames: list[Any]) -> None:
        self.on_notification(self.session.deserialize(_json_as_bytes(frames), check_buffers=False))


def _json_as_bytes(frames: list[Any]) -> list[Any]:
    """The frames after the delimiter, with the signature and JSON frames as bytes (copied once, not once
    per look) and the buffers left as zero-copy zmq Frames."""
    _, rest = wire.feed_identities(frames)
    return [f.bytes if hasattr(f, "bytes") else f for f in rest[:5]] + rest[5:]
