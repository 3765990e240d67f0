"""The client's IO thread: it owns every socket, forwards outgoing frames and resolves replies.

User threads build and sign messages themselves and hand the frames over an inproc PUSH socket (one lock,
no pickling here). The thread polls the PULL end and the controller sockets, verifies what arrives and
hands each reply to the AsyncResult waiting for it, in batches, so the per-task cost stays a few
microseconds. A reply whose task printed output it has not seen yet is held until that output arrives
(the reply's ``iopub_count`` says how much to expect) or a short grace period passes.

A blocking call skips the thread hand-offs: it borrows a sync lane (lanes.py), sends and receives on it
itself, and dispatches its replies through the same handler, under ``dispatch_lock``. Requests from one
thread must reach an engine in order, so a lane is only used while every request sent on the IO thread's
socket of that channel has been answered.
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
from ipcluster.wire import recv_frames, send_frames, shm

from .lanes import Lanes, SyncLane

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
        # held while a reply, output or notification is handed to the Client (by this thread or a lane's)
        self.dispatch_lock = threading.RLock()
        # requests queued for the IO thread's mux/task sockets, and replies received on them (this thread)
        self._queued = {MUX: 0, TASK: 0}
        self._answered = {MUX: 0, TASK: 0}
        self._count_lock = threading.Lock()
        self._adopting: deque[SyncLane] = deque()
        self._adopt_lock = threading.Lock()
        self._adopt_closed = False
        self.lanes = Lanes(
            context,
            {MUX: urls["mux"], TASK: urls["task"]},
            session.bsession,
            self._dispatch_lane_reply,
            self._adopt,
            self._settle,
        )

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
        self.send_many(channel, [frames], copy)

    def send_many(self, channel: bytes, messages: list[list[Any]], copy: bool = True) -> None:
        """``send`` for several messages; inside ``call_blocking`` they go out on this thread's lane."""
        if self._closing:
            raise RuntimeError("this Client is closed: create a new one")
        lane = self.lanes.current(channel)
        if lane is not None:
            for frames in messages:
                lane.send(frames, copy)
            return
        if channel in self._queued:
            with self._count_lock:
                self._queued[channel] += len(messages)
        append = self._outbox.append
        for frames in messages:
            append((channel, frames, copy))
        if not self._signalled:
            self._wake()

    def expect_replies(self, channel: bytes, n: int) -> None:
        """Replies will come on this channel's socket for requests it did not send (the controller resubmits
        tasks for this client): count them as sent, so the sync lanes keep working once they are in."""
        with self._count_lock:
            self._queued[channel] += n

    def call_blocking(self, channel: bytes, submit: Callable[[], Any]) -> Any:
        """Run ``submit()`` (it sends requests on ``channel`` and returns their AsyncResult) for a caller that
        will wait for the result: on a sync lane when the order of this client's requests allows it (nothing
        sent on the IO thread's socket of that channel is unanswered), else as usual."""
        if self._closing or self._queued.get(channel) != self._answered.get(channel):
            return submit()
        return self.lanes.call(channel, submit)

    def _dispatch_lane_reply(self, frames: list[Any]) -> bool:
        """Verify one reply received on a lane and hand it to the Client; False if it was dropped."""
        try:
            msg = open_reply(self.session, frames)
        except WireError as exc:
            self._bad.warning("controller", "dropped a message that failed verification: %s", exc)
            return False
        with self.dispatch_lock:
            try:
                self.on_reply(msg)
            except Exception:
                log.exception("error handling a reply from the controller")
        return True

    def _adopt(self, lane: SyncLane) -> bool:
        """Take over a lane whose caller stopped waiting: this thread receives its late replies."""
        with self._adopt_lock:
            if self._adopt_closed:
                return False
            self._adopting.append(lane)
        self._settle()
        return True

    def _settle(self) -> None:
        """Wake this thread (a reply held for its output needs its grace timer; a lane was handed over)."""
        try:
            self._wake()
        except RuntimeError:
            pass  # closing: nothing left to settle

    def _wake(self) -> None:
        with self._push_lock:
            push = self._push
            if push is None:
                raise RuntimeError("this Client is closed: create a new one")
            self._signalled = True
            push.send(b"")

    def stop(self, timeout: float = 5.0) -> None:
        self._closing = True
        self.lanes.close()
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
        adopted: dict[zmq.Socket, SyncLane] = {}
        try:
            self._loop(pull, out, iopub, notification, monitor, adopted)
        except Exception:
            log.exception("the client IO thread failed")
        finally:
            try:
                iopub.disable_monitor()
            except zmq.ZMQError:
                pass
            for s in sockets:
                s.close(0)
            with self._adopt_lock:
                self._adopt_closed = True
                lanes = [*adopted.values(), *self._adopting]
                self._adopting.clear()
            for lane in lanes:
                lane.close()

    def _loop(
        self,
        pull: zmq.Socket,
        out: dict[bytes, zmq.Socket],
        iopub: zmq.Socket,
        notification: zmq.Socket,
        monitor: zmq.Socket,
        adopted: dict[zmq.Socket, SyncLane],
    ) -> None:
        poller = zmq.Poller()
        for s in (pull, *out.values(), iopub, notification, monitor):
            poller.register(s, zmq.POLLIN)
        query, control = out[QUERY], out[CONTROL]
        reply_socks = ((out[MUX], MUX), (out[TASK], TASK), (control, CONTROL))
        answered = self._answered
        lock = self.dispatch_lock
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
                while self._adopting:
                    lane = self._adopting.popleft()
                    adopted[lane.sock] = lane
                    poller.register(lane.sock, zmq.POLLIN)
            for sock, channel in reply_socks:
                if sock in events:
                    with lock:
                        n = self._drain(sock, self._handle_reply)
                    if channel in answered:
                        answered[channel] += n
            if iopub in events:
                with lock:
                    self._drain(iopub, self._handle_iopub)
            if query in events:
                self._drain(query, self._handle_query)
            if notification in events:
                with lock:
                    self._drain(notification, self._handle_notification)
            if monitor in events:
                self._drain_monitor(monitor, poller)
            if adopted:
                self._serve_adopted(adopted, events, poller)
            with lock:
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

    def _serve_adopted(
        self, adopted: dict[zmq.Socket, SyncLane], events: dict[Any, int], poller: zmq.Poller
    ) -> None:
        """Dispatch the late replies arriving on lanes handed over to this thread; give back drained lanes."""
        for sock, lane in list(adopted.items()):
            if sock not in events:
                continue
            for _ in range(BATCH):
                try:
                    frames = recv_frames(sock)
                except zmq.Again:
                    break
                if self._dispatch_lane_reply(frames):
                    lane.inflight -= 1
            if lane.inflight <= 0:
                poller.unregister(sock)
                del adopted[sock]
                lane.inflight = 0
                self.lanes.give_back(lane)

    def _drain(self, sock: zmq.Socket, handle: Callable[[list[Any]], None]) -> int:
        """Handle what is waiting on ``sock`` (at most BATCH messages); returns how many were received."""
        for n in range(BATCH):
            try:
                frames = recv_frames(sock)
            except zmq.Again:
                return n
            try:
                handle(frames)
            except WireError as exc:
                self._bad.warning("controller", "dropped a message that failed verification: %s", exc)
            except Exception:
                log.exception("error handling a message from the controller")
        return BATCH

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
        self.on_reply(open_reply(self.session, frames))

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


def open_reply(session: wire.Session, frames: list[Any]) -> dict[str, Any]:
    """Verify a reply, its buffers included; buffers an engine on this host left in shared memory are mapped
    (and their files removed: we are their only reader). One that cannot be read becomes an error reply, so
    its caller learns why instead of waiting."""
    msg = session.deserialize(_json_as_bytes(frames), check_buffers=False)
    if msg["buffers"]:
        try:
            shm.attach(msg["header"], msg["buffers"], unlink=True)
        except shm.ShmError as exc:
            msg["content"] = {
                "status": "error",
                "ename": "SerializationError",
                "evalue": f"the result could not be read from shared memory: {exc}",
                "traceback": [],
            }
            msg["buffers"] = []
            return msg
        session.check_buffers(msg["header"], msg["buffers"])
    return msg


def _json_as_bytes(frames: list[Any]) -> list[Any]:
    """The frames after the delimiter, with the signature and JSON frames as bytes (copied once, not once
    per look) and the buffers left as zero-copy zmq Frames."""
    _, rest = wire.feed_identities(frames)
    return [f.bytes if hasattr(f, "bytes") else f for f in rest[:5]] + rest[5:]
