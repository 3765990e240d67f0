"""The forwarding loop: one thread and one selector for every local listener and bridged stream of a connection.

A bridge joins an accepted local TCP socket to a paramiko ``direct-tcpip`` channel. Both ends are polled by
file descriptor (a channel exposes a pipe that is readable while it holds data or is closed), so a single
thread moves bytes for any number of forwards without a thread per stream. Flow control is end to end: a
bridge stops reading the side whose data it cannot deliver, so the SSH window or the kernel socket buffer
pushes back on the writer. Listening sockets live here, independent of any transport, so they keep their
ports while the connection reconnects.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import threading
import time
from collections.abc import Callable

import paramiko
from paramiko.common import MSG_CHANNEL_DATA, cMSG_CHANNEL_WINDOW_ADJUST

__all__ = ["ForwardLoop"]

log = logging.getLogger("ipcluster.tunnel")

_CHUNK = 1 << 18
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
OpenChannel = Callable[[tuple[str, int], tuple[str, int]], paramiko.Channel]


def _deliver(chan: paramiko.Channel, message: paramiko.Message) -> None:
    sink = getattr(chan, "_ipcluster_sink", None)
    if sink is None:
        paramiko.Channel._feed(chan, message)
    else:
        sink(message.get_binary())


class DeliveringTransport(paramiko.Transport):
    """A paramiko Transport that hands a bridged channel's data straight to its local socket.

    Without it, data goes transport thread -> channel buffer -> pipe -> loop thread -> socket: a thread hop
    per message, which was the largest part of the added round trip. Channels without a sink (sessions,
    SFTP) keep paramiko's own path.
    """

    _channel_handler_table = {**paramiko.Transport._channel_handler_table, MSG_CHANNEL_DATA: _deliver}


class _Listener:
    __slots__ = ("sock", "remote", "port", "registered")

    def __init__(self, sock: socket.socket, remote: tuple[str, int]) -> None:
        self.sock = sock
        self.remote = remote
        self.port: int = sock.getsockname()[1]
        self.registered = False


class _Bridge:
    """Moves bytes both ways between one local socket and one channel, without blocking."""

    def __init__(self, loop: ForwardLoop, sock: socket.socket, chan: paramiko.Channel) -> None:
        self.loop, self.sock, self.chan = loop, sock, chan
        self.to_sock = bytearray()
        self.to_chan = bytearray()
        self.sock_eof = self.chan_eof = self.closed = False
        self.sock_mask = self.chan_mask = 0
        chan.settimeout(0.0)
        self._sock_handler = self.on_sock
        self._chan_handler = self.on_chan
        # to_sock and the local socket's send side are shared with the transport thread (deliver)
        self.lock = threading.Lock()
        self.unacked = 0  # bytes written to the local socket and not yet returned to the server's window
        self.ack_threshold = max(1, chan.in_window_size // 4)
        self.ack_scheduled = False
        chan._ipcluster_sink = self.deliver

    def deliver(self, data: bytes) -> None:
        """Transport thread: write channel data to the local socket now, or queue it behind earlier data."""
        wake = False
        with self.lock:
            if self.closed:
                return
            if self.chan.in_buffer.read_ready():  # older data still in paramiko's buffer: keep the order
                self.chan.in_buffer.feed(data)
                return
            if self.to_sock:
                self.to_sock += data
            else:
                try:
                    sent = self.sock.send(data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = len(data)  # the loop sees the broken socket and closes the bridge
                self.unacked += sent
                if sent < len(data):
                    self.to_sock += memoryview(data)[sent:]
                    wake = True
            if self.unacked >= self.ack_threshold and not self.ack_scheduled:
                self.ack_scheduled = wake = True
        if wake:
            self.loop.call_soon(self.update)

    def send_ack(self) -> None:
        """Loop thread: return consumed bytes to the server's window (never from the transport thread, which
        would deadlock waiting for itself during a re-key)."""
        with self.lock:
            consumed, self.unacked, self.ack_scheduled = self.unacked, 0, False
        if consumed and not self.closed:
            ack = self.chan._check_add_window(consumed)
            if ack > 0:
                message = paramiko.Message()
                message.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
                message.add_int(self.chan.remote_chanid)
                message.add_int(ack)
                try:
                    self.chan.transport._send_user_message(message)
                except (OSError, EOFError, paramiko.SSHException):
                    pass

    def update(self) -> None:
        """Register for exactly the events this bridge can act on now (closing it once both sides are done)."""
        if self.closed:
            return
        if self.unacked >= self.ack_threshold or (self.unacked and not self.to_sock):
            self.send_ack()
        if self.sock_eof and self.chan_eof and not self.to_sock and not self.to_chan:
            self.close()
            return
        sock_mask = (_READ if not (self.sock_eof or self.to_chan) else 0) | (_WRITE if self.to_sock else 0)
        chan_mask = _READ if not (self.chan_eof or self.to_sock) else 0
        self.sock_mask = self.loop.reregister(self.sock, self.sock_mask, sock_mask, self._sock_handler)
        self.chan_mask = self.loop.reregister(self.chan, self.chan_mask, chan_mask, self._chan_handler)
        if self.to_chan:
            self.loop.blocked.add(self)
        else:
            self.loop.blocked.discard(self)

    def on_chan(self, _mask: int) -> None:
        """Loop thread: paramiko's buffer has data (that arrived before the sink was set) or was closed."""
        with self.lock:
            try:
                data = self.chan.in_buffer.read(_CHUNK, 0.0)
            except paramiko.buffered_pipe.PipeTimeout:
                return
            if data:
                self.to_sock += data
            else:
                self.chan_eof = True
        self.flush_sock()
        self.update()

    def on_sock(self, mask: int) -> None:
        if mask & _WRITE:
            self.flush_sock()
        if mask & _READ and not self.closed:
            try:
                data = self.sock.recv(_CHUNK)
            except BlockingIOError:
                data = None
            except OSError:
                self.close()
                return
            if data == b"":
                self.sock_eof = True
            if data and not self.to_chan and len(data) <= self.chan.out_max_packet_size - 64:
                self._send_small(data)  # common case: one packet, no staging copy
            else:
                if data:
                    self.to_chan += data
                self.flush_chan()
        self.update()

    def flush_sock(self) -> None:
        with self.lock:
            if self.to_sock:
                try:
                    sent = self.sock.send(self.to_sock)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    sent = -1
                if sent >= 0:
                    del self.to_sock[:sent]
                    self.unacked += sent
            else:
                sent = 0
            done = self.chan_eof and not self.to_sock
        if sent < 0:
            self.close()
            return
        if done and not self.closed:
            try:
                self.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _send_small(self, data: bytes) -> None:
        try:
            sent = self.chan.send(data)
        except TimeoutError:
            sent = 0
        except OSError:
            self.close()
            return
        if sent < len(data):
            self.to_chan += memoryview(data)[sent:]

    def flush_chan(self) -> None:
        """Send what the channel's window allows; the rest waits (the loop retries while any bridge is blocked)."""
        while self.to_chan and not self.closed:
            try:
                # one packet per call: copy only what fits in it
                sent = self.chan.send(bytes(self.to_chan[: max(1024, self.chan.out_max_packet_size - 64)]))
            except TimeoutError:
                return
            except OSError:
                self.close()
                return
            if sent == 0:
                self.close()
                return
            del self.to_chan[:sent]
        if self.sock_eof and not self.to_chan and not self.closed:
            self.chan.shutdown_write()

    def close(self) -> None:
        if self.closed:
            return
        with self.lock:
            self.closed = True
            self.chan._ipcluster_sink = None
        self.loop.reregister(self.sock, self.sock_mask, 0, None)
        self.loop.reregister(self.chan, self.chan_mask, 0, None)
        self.loop.blocked.discard(self)
        self.loop.bridges.discard(self)
        self.chan.close()
        self.sock.close()


class ForwardLoop:
    """The selector thread of one SSH connection.

    ``open_channel(remote, peer)`` opens a ``direct-tcpip`` channel on the connection's current transport; it is
    called on a short-lived helper thread, because the server answers only once it has connected to the
    endpoint, and a slow endpoint must not stall the other streams. ``on_tick`` runs on the loop thread about
    every ``tick`` seconds: the owner checks its transport there and may reconnect (blocking the loop is fine
    then, every stream being dead anyway).
    """

    def __init__(self, name: str, open_channel: OpenChannel, on_tick: Callable[[], None], tick: float = 0.2):
        self._open_channel = open_channel
        self._on_tick = on_tick
        self._tick = tick
        self._selector = selectors.DefaultSelector()
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        for end in (self._wake_r, self._wake_w):
            end.setblocking(False)
        self._selector.register(self._wake_r, _READ, self._drain_commands)
        self._listeners: dict[int, _Listener] = {}
        self._openers: set[threading.Thread] = set()
        self._openers_lock = threading.Lock()
        self.bridges: set[_Bridge] = set()
        self.blocked: set[_Bridge] = set()
        self.accepting = False
        self.generation = 0
        self._stopping = self._cleaned = False
        self._thread = threading.Thread(target=self._run, name=f"ipcluster-tunnel-{name}", daemon=True)

    # -- called from any thread ------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    def call_soon(self, func: Callable[[], None]) -> None:
        """Run ``func`` on the loop thread."""
        self._commands.put(func)
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    def add_listener(self, remote: tuple[str, int], local_port: int = 0) -> int:
        """Listen on 127.0.0.1:``local_port`` (0: any free port) for ``remote``; return the bound port.

        Binding happens in the caller's thread so an "address in use" error reaches the caller.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", local_port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        listener = _Listener(sock, remote)
        self.call_soon(lambda: self._add_listener(listener))
        return listener.port

    def remove_listener(self, local_port: int) -> None:
        self.call_soon(lambda: self._remove_listener(local_port))

    def stop(self, timeout: float = 5.0) -> None:
        """Close every listener and stream and end the thread (joined unless called from the thread itself)."""
        self._stopping = True
        self.call_soon(lambda: None)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        elif not self._thread.is_alive():
            self._cleanup()
        with self._openers_lock:
            openers = list(self._openers)
        for opener in openers:
            opener.join(timeout)
        if not self._thread.is_alive():
            while True:  # channels opened while we stopped: adopt() closes them
                try:
                    self._commands.get_nowait()()
                except queue.Empty:
                    break

    # -- loop thread only -----------------------------------------------------------------------
    def reregister(self, fileobj: object, old: int, new: int, handler: object) -> int:
        if old == new:
            return new
        try:
            if not old:
                self._selector.register(fileobj, new, handler)  # type: ignore[arg-type]
            elif not new:
                self._selector.unregister(fileobj)  # type: ignore[arg-type]
            else:
                self._selector.modify(fileobj, new, handler)  # type: ignore[arg-type]
        except (KeyError, ValueError, OSError):
            return 0
        return new

    def set_accepting(self, accepting: bool) -> None:
        """Accept new local connections (transport up) or leave them queued in the backlog (reconnecting)."""
        self.accepting = accepting
        for listener in self._listeners.values():
            self._register_listener(listener)

    def drop_bridges(self) -> None:
        """Close every stream: their channels died with the transport. Local peers see a reset and reconnect."""
        self.generation += 1
        for bridge in list(self.bridges):
            bridge.close()

    def _register_listener(self, listener: _Listener) -> None:
        want = self.accepting and not self._stopping
        if want and not listener.registered:
            self._selector.register(listener.sock, _READ, lambda _mask: self._accept(listener))
        elif listener.registered and not want:
            self._selector.unregister(listener.sock)
        listener.registered = want

    def _add_listener(self, listener: _Listener) -> None:
        if self._stopping:
            listener.sock.close()
            return
        self._listeners[listener.port] = listener
        self._register_listener(listener)

    def _remove_listener(self, local_port: int) -> None:
        listener = self._listeners.pop(local_port, None)
        if listener is not None:
            if listener.registered:
                self._selector.unregister(listener.sock)
            listener.sock.close()

    def _drain_commands(self, _mask: int) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            command()

    def _accept(self, listener: _Listener) -> None:
        for _ in range(16):
            try:
                sock, peer = listener.sock.accept()
            except (BlockingIOError, OSError):
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            opener = threading.Thread(
                target=self._open, args=(sock, peer, listener.remote, self.generation), daemon=True
            )
            with self._openers_lock:
                self._openers.add(opener)
            opener.start()

    def _open(
        self, sock: socket.socket, peer: tuple[str, int], remote: tuple[str, int], generation: int
    ) -> None:
        """Helper thread: open the channel, then hand the pair to the loop (or drop it if things moved on)."""
        try:
            chan = self._open_channel(remote, peer)
        except Exception as exc:  # noqa: BLE001 - any failure just refuses this one local connection
            log.warning("forward to %s:%s refused: %s", remote[0], remote[1], exc)
            sock.close()
        else:
            chan.fileno()  # create the readiness pipe before the channel gets data

            def adopt() -> None:
                if self._stopping or generation != self.generation or chan.closed:
                    chan.close()
                    sock.close()
                    return
                bridge = _Bridge(self, sock, chan)
                self.bridges.add(bridge)
                bridge.update()

            self.call_soon(adopt)
        finally:
            with self._openers_lock:
                self._openers.discard(threading.current_thread())

    def _run(self) -> None:
        next_tick = time.monotonic() + self._tick
        try:
            while not self._stopping:
                timeout = 0.0005 if self.blocked else max(0.0, next_tick - time.monotonic())
                for key, mask in self._selector.select(timeout):
                    if self._stopping:
                        break
                    key.data(mask)
                for bridge in list(self.blocked):
                    bridge.flush_chan()
                    bridge.update()
                if time.monotonic() >= next_tick and not self._stopping:
                    self._on_tick()
                    next_tick = time.monotonic() + self._tick
        except Exception:  # pragma: no cover - a bug here must not pass silently
            log.exception("tunnel forwarding loop crashed")
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = self._stopping = True
        while True:  # queued commands close what they hold once they see _stopping
            try:
                self._commands.get_nowait()()
            except queue.Empty:
                break
        self.drop_bridges()
        for port in list(self._listeners):
            self._remove_listener(port)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
