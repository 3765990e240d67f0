"""SSHConnection: one self-healing paramiko transport to one server, shared by tunnels and the SSH launcher.

Modelled on the idea of Fabric's ``Connection``: created cheaply, opened lazily on first use, usable as a
context manager. It carries any number of local forwards (``forward``), remote commands (``run``) and SFTP
copies (``put``/``get``). When the transport dies it reconnects with backoff on its loop thread and keeps
the local listening ports, so zmq sockets connected to them reconnect by themselves; the owner follows the
state (``up``, ``reconnecting``, ``failed``) through ``state``, ``wait_for_state`` and ``on_state``
callbacks.
"""

from __future__ import annotations

import atexit
import enum
import logging
import os
import random
import selectors
import socket
import stat
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import paramiko

from ipcluster.tunnel._loop import DeliveringTransport, ForwardLoop
from ipcluster.tunnel.auth import Credentials, PasswordCallback, authenticate
from ipcluster.tunnel.config import SSHTarget, resolve_target
from ipcluster.tunnel.errors import (
    SSHAuthError,
    SSHChannelError,
    SSHConfigError,
    SSHConnectError,
    SSHError,
    SSHHostKeyError,
    SSHKeyFileError,
    SSHTimeout,
    TunnelDown,
)
from ipcluster.tunnel.hostkeys import KnownHosts, check_policy, verify_host_key

__all__ = ["SSHConnection", "TunnelState", "RunResult", "StateCallback"]

log = logging.getLogger("ipcluster.tunnel")

# Bigger windows and packets than paramiko's defaults (2 MiB / 32 KiB): fewer window adjustments and
# fewer, larger packets through paramiko's Python packetizer. The window bounds what one stream can have
# in flight.
WINDOW_SIZE = 16 * 1024 * 1024
MAX_PACKET_SIZE = 256 * 1024 - 1024
# AES-GCM authenticates in the same pass as it encrypts (no separate HMAC), the cheapest that paramiko offers.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
_PERMANENT = (SSHHostKeyError, SSHAuthError, SSHKeyFileError, SSHConfigError)
_KeyFiles = str | os.PathLike[str] | list[str | os.PathLike[str]] | tuple[str | os.PathLike[str], ...] | None


class TunnelState(str, enum.Enum):
    """Where a connection is in its life. ``failed`` needs ``reconnect()`` (or a new connection)."""

    NEW = "new"
    UP = "up"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    CLOSED = "closed"


class RunResult(NamedTuple):
    """What a remote command returned; unpacks as ``status, out, err = conn.run(...)``."""

    exit_status: int
    stdout: str
    stderr: str


StateCallback = Callable[["SSHConnection", TunnelState, "SSHError | None"], None]


def _keyfile_tuple(keyfile: _KeyFiles) -> tuple[str, ...]:
    if keyfile is None:
        return ()
    if isinstance(keyfile, (str, os.PathLike)):
        return (os.fspath(keyfile),)
    return tuple(os.fspath(k) for k in keyfile)


class SSHConnection:
    """One SSH server, one transport, reconnected on loss; every forward, command and copy goes over it.

    Args:
        server: ``[user@]host[:port]`` or an ssh_config alias.
        keyfile: private key file(s) tried first; a missing one is an error (config IdentityFiles are not).
        password, password_callback: a password, or a function called with a prompt that returns one.
        passphrase: for encrypted key files; otherwise asked on the terminal when ``interactive``.
        host_key_policy: ``"strict"`` or ``"accept-new"``; None means ssh_config's StrictHostKeyChecking
            when that is ``accept-new``, else strict.
        ssh_config: ssh_config file to read instead of ``~/.ssh/config``.
        known_hosts: file(s) to check host keys against instead of UserKnownHostsFile/``~/.ssh/known_hosts``.
        proxy_jump: overrides ssh_config ProxyJump (``"none"`` disables it).
        connect_timeout: seconds for TCP connect, handshake and channel opens (default: ConnectTimeout or 10).
        keepalive: seconds between keepalives, also the TCP dead-peer probe interval (ServerAliveInterval or 15).
        reconnect: reconnect when the transport dies (else go to ``failed``).
        reconnect_timeout: give up (state ``failed``) after this many seconds of failed attempts; None: never.
        on_state: called as ``on_state(conn, state, error)`` on every state change, from an internal thread.
    """

    def __init__(
        self,
        server: str,
        *,
        keyfile: _KeyFiles = None,
        password: str | None = None,
        password_callback: PasswordCallback | None = None,
        passphrase: str | None = None,
        host_key_policy: str | None = None,
        ssh_config: str | os.PathLike[str] | None = None,
        known_hosts: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None,
        allow_agent: bool = True,
        look_for_keys: bool = True,
        interactive: bool | None = None,
        proxy_jump: str | None = None,
        connect_timeout: float | None = None,
        keepalive: float | None = None,
        reconnect: bool = True,
        reconnect_timeout: float | None = 300.0,
        backoff: tuple[float, float] = (0.1, 5.0),
        window_size: int = WINDOW_SIZE,
        max_packet_size: int = MAX_PACKET_SIZE,
        on_state: StateCallback | None = None,
    ) -> None:
        self.server = server
        self.target: SSHTarget = resolve_target(server, ssh_config, known_hosts)
        config_policy = "accept-new" if self.target.strict_host_key_checking == "accept-new" else "strict"
        self.host_key_policy = check_policy(host_key_policy or config_policy)
        self.credentials = Credentials(
            keyfiles=_keyfile_tuple(keyfile),
            password=password,
            password_callback=password_callback,
            passphrase=passphrase,
            allow_agent=allow_agent,
            look_for_keys=look_for_keys,
            interactive=interactive,
        )
        self._ssh_config = ssh_config
        self._proxy_jump = self.target.proxy_jump if proxy_jump is None else proxy_jump
        if self._proxy_jump in ("", "none"):
            self._proxy_jump = None
        self.connect_timeout = connect_timeout or self.target.connect_timeout or 10.0
        self.keepalive = keepalive or self.target.server_alive_interval or 15.0
        self.reconnect_enabled = reconnect
        self.reconnect_timeout = reconnect_timeout
        self.backoff = backoff
        self.window_size = window_size
        self.max_packet_size = max_packet_size
        self._callbacks: list[StateCallback] = [on_state] if on_state else []
        self._state = TunnelState.NEW
        self.last_error: SSHError | None = None
        self._cond = threading.Condition(threading.RLock())
        self._open_lock = threading.Lock()
        self._stop = threading.Event()
        self._transport: paramiko.Transport | None = None
        self._raw: socket.socket | paramiko.Channel | paramiko.ProxyCommand | None = None
        self._loop: ForwardLoop | None = None
        self._forwards: dict[int, tuple[str, int]] = {}
        self._registry_key: object = None

    # -- state ---------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<SSHConnection {self.target} {self._state.value}>"

    @property
    def state(self) -> TunnelState:
        """The current state; changes are also reported to ``on_state`` callbacks."""
        return self._state

    def add_state_callback(self, callback: StateCallback) -> None:
        """Call ``callback(conn, state, error)`` on each later state change (from an internal thread)."""
        self._callbacks.append(callback)

    def remove_state_callback(self, callback: StateCallback) -> None:
        self._callbacks.remove(callback)

    def wait_for_state(self, *states: TunnelState | str, timeout: float | None = None) -> TunnelState:
        """Block until the state is one of ``states``; raise SSHTimeout after ``timeout`` seconds."""
        wanted = {TunnelState(s) for s in states}
        with self._cond:
            if not self._cond.wait_for(lambda: self._state in wanted, timeout):
                raise SSHTimeout(
                    f"SSH connection to {self.target.name} is {self._state.value}, not"
                    f" {'/'.join(sorted(s.value for s in wanted))}, after {timeout} s; see its last error: "
                    f"{self.last_error}"
                )
            return self._state

    def _set_state(self, state: TunnelState, error: SSHError | None = None) -> None:
        with self._cond:
            if self._state is state or (
                self._state is TunnelState.CLOSED and state is not TunnelState.CLOSED
            ):
                return
            self._state = state
            if error is not None:
                self.last_error = error
            self._cond.notify_all()
        log.info("ssh %s: %s%s", self.target, state.value, f" ({error})" if error else "")
        for callback in list(self._callbacks):
            try:
                callback(self, state, error)
            except Exception:  # noqa: BLE001 - an observer's bug must not break the connection
                log.exception("SSH state callback %r failed", callback)

    # -- opening -------------------------------------------------------------------------------
    def open(self) -> SSHConnection:
        """Connect now if not connected yet (also done by every operation); raise SSHError on failure."""
        with self._open_lock:
            state = self._state
            if state is TunnelState.CLOSED:
                raise TunnelDown(f"SSH connection to {self.target.name} was closed; get a new one")
            if state in (TunnelState.UP, TunnelState.RECONNECTING):
                return self
            if state is TunnelState.FAILED and self._loop is not None:
                raise TunnelDown(
                    f"SSH connection to {self.target.name} failed: {self.last_error}; call reconnect() or"
                    " get a new connection"
                )
            try:
                self._install(self._connect())
            except SSHError as exc:
                self._set_state(TunnelState.FAILED, exc)
                raise
            self._loop = ForwardLoop(self.target.name, self._open_forward_channel, self._check_health)
            self._loop.set_accepting(True)
            self._loop.start()
            self._set_state(TunnelState.UP)
        return self

    def __enter__(self) -> SSHConnection:
        return self.open()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _connect_socket(self) -> socket.socket | paramiko.Channel | paramiko.ProxyCommand:
        target = self.target
        if self._proxy_jump:
            return self._jump_channel(self._proxy_jump)
        if target.proxy_command:
            return paramiko.ProxyCommand(target.proxy_command)
        where = f"{target.name} ({target.hostname} port {target.port})"
        try:
            sock = socket.create_connection((target.hostname, target.port), timeout=self.connect_timeout)
        except socket.gaierror as exc:
            raise SSHConnectError(
                f"cannot resolve SSH server {target.hostname!r} ({exc.strerror}); check the name or HostName"
                " in ssh_config"
            ) from exc
        except TimeoutError as exc:
            raise SSHConnectError(
                f"cannot connect to {where}: timed out after {self.connect_timeout:g} s; check the host is up"
                " and no firewall blocks the port"
            ) from exc
        except OSError as exc:
            raise SSHConnectError(
                f"cannot connect to {where}: {exc.strerror or exc}; check that sshd runs there and the port"
                " is right"
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        interval = max(1, int(self.keepalive))
        for name, value in (("TCP_KEEPIDLE", interval), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # unacknowledged data for this long: the peer is gone
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, interval * 3 * 1000)
        return sock

    def _jump_channel(self, chain: str) -> paramiko.Channel:
        hops = chain.split(",")
        jump = get_connection(
            hops[-1],
            proxy_jump=",".join(hops[:-1]) or "none",
            keyfile=list(self.credentials.keyfiles) or None,
            password_callback=self.credentials.password_callback,
            passphrase=self.credentials.passphrase,
            ssh_config=self._ssh_config,
            allow_agent=self.credentials.allow_agent,
            look_for_keys=self.credentials.look_for_keys,
            interactive=self.credentials.interactive,
            host_key_policy=self.host_key_policy,
            connect_timeout=self.connect_timeout,
        )
        return jump.open_channel((self.target.hostname, self.target.port))

    def _connect(self) -> tuple[paramiko.Transport, object]:
        """One attempt: TCP (or jump channel), handshake, host key check, authentication."""
        raw = self._connect_socket()
        transport = DeliveringTransport(
            raw, default_window_size=self.window_size, default_max_packet_size=self.max_packet_size
        )
        try:
            options = transport.get_security_options()
            offered = options.ciphers
            options.ciphers = tuple(c for c in PREFERRED_CIPHERS if c in offered) + tuple(
                c for c in offered if c not in PREFERRED_CIPHERS
            )
            known = KnownHosts(self.target.known_hosts_files)
            options.key_types = known.preferred_algorithms(self.target.known_hosts_name, options.key_types)
            try:
                transport.start_client(timeout=self.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise SSHConnectError(
                    f"SSH handshake with {self.target.name} ({self.target.hostname} port {self.target.port})"
                    f" failed: {exc or type(exc).__name__}; check that the port is an SSH server"
                ) from exc
            verify_host_key(self.target, transport.get_remote_server_key(), self.host_key_policy, known)
            authenticate(transport, self.target, self.credentials)
            transport.set_keepalive(max(1, int(self.keepalive)))
        except BaseException:
            self._dispose(transport, raw)
            raise
        return transport, raw

    def _install(self, connected: tuple[paramiko.Transport, object]) -> None:
        with self._cond:
            self._transport, self._raw = connected  # type: ignore[assignment]

    @staticmethod
    def _dispose(transport: paramiko.Transport | None, raw: object) -> None:
        """Close a transport and its socket and wait for paramiko's thread, so nothing outlives us."""
        if transport is not None:
            transport.close()
            if transport.is_alive() and transport is not threading.current_thread():
                transport.join(5.0)
        if raw is not None:
            try:
                raw.close()  # type: ignore[attr-defined]
            except OSError:
                pass

    # -- health and reconnection (loop thread) ----------------------------------------------------
    def _check_health(self) -> None:
        transport = self._transport
        if self._state is TunnelState.UP and (transport is None or not transport.is_active()):
            reason = transport.get_exception() if transport is not None else None
            detail = str(reason) if reason is not None and str(reason) else "connection closed by the server"
            self._lost(SSHConnectError(f"lost SSH connection to {self.target.name}: {detail}; reconnecting"))

    def _lost(self, error: SSHError) -> None:
        assert self._loop is not None
        self._loop.set_accepting(False)
        self._loop.drop_bridges()
        with self._cond:
            old, raw = self._transport, self._raw
            self._transport = self._raw = None
        self._dispose(old, raw)
        if not self.reconnect_enabled:
            self._set_state(TunnelState.FAILED, error)
            return
        self._set_state(TunnelState.RECONNECTING, error)
        self._reconnect_loop()

    def _reconnect_loop(self) -> None:
        delay, cap = self.backoff
        deadline = None if self.reconnect_timeout is None else time.monotonic() + self.reconnect_timeout
        while not self._stop.is_set():
            try:
                connected = self._connect()
            except _PERMANENT as exc:
                self._set_state(TunnelState.FAILED, exc)
                return
            except SSHError as exc:
                self.last_error = exc
                if deadline is not None and time.monotonic() >= deadline:
                    self._set_state(TunnelState.FAILED, exc)
                    return
                self._stop.wait(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, cap)
                continue
            if self._stop.is_set():
                self._dispose(*connected)
                return
            self._install(connected)
            assert self._loop is not None
            self._loop.set_accepting(True)
            self._set_state(TunnelState.UP)
            return

    def reconnect(self) -> None:
        """Drop the current transport (if any) and connect again in the background, keeping local ports."""
        if self._loop is None:
            self.open()
            return
        if self._state is TunnelState.CLOSED:
            raise TunnelDown(f"SSH connection to {self.target.name} was closed; get a new one")
        self._loop.call_soon(
            lambda: self._lost(SSHConnectError(f"reconnect to {self.target.name} requested"))
        )

    def _live_transport(self, timeout: float | None = None) -> paramiko.Transport:
        self.open()
        wait = self.connect_timeout if timeout is None else timeout
        try:
            self.wait_for_state(TunnelState.UP, TunnelState.FAILED, TunnelState.CLOSED, timeout=wait)
        except SSHTimeout:
            pass
        with self._cond:
            if self._state is TunnelState.UP and self._transport is not None:
                return self._transport
        raise TunnelDown(
            f"SSH connection to {self.target.name} is {self._state.value}: {self.last_error}; wait for it to"
            " come back or call reconnect()"
        )

    @property
    def transport(self) -> paramiko.Transport:
        """The live paramiko transport (connecting first if needed)."""
        return self._live_transport()

    # -- channels and forwards ---------------------------------------------------------------------
    def open_channel(
        self, remote: tuple[str, int], peer: tuple[str, int] = ("127.0.0.1", 0), timeout: float | None = None
    ) -> paramiko.Channel:
        """Open a ``direct-tcpip`` channel to ``remote`` (as the server sees it): a socket-like stream."""
        transport = self._live_transport(timeout)
        try:
            return transport.open_channel(
                "direct-tcpip", remote, peer, timeout=timeout or self.connect_timeout
            )
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise SSHChannelError(
                f"{self.target.name} could not open a connection to {remote[0]}:{remote[1]} ({exc}); check that"
                " something listens there as seen from the SSH server and that AllowTcpForwarding is on"
            ) from exc

    def _open_forward_channel(self, remote: tuple[str, int], peer: tuple[str, int]) -> paramiko.Channel:
        transport = self._transport
        if transport is None or not transport.is_active():
            raise TunnelDown(f"SSH connection to {self.target.name} is down")
        return transport.open_channel("direct-tcpip", remote, peer, timeout=self.connect_timeout)

    def forward(self, remote_host: str, remote_port: int, local_port: int = 0) -> int:
        """Listen on 127.0.0.1 and forward each connection to ``remote_host:remote_port`` seen from the server.

        Returns the local port. Asking again for the same endpoint returns the same port (unless a different
        ``local_port`` is named). The listener stays open across reconnects, until ``unforward`` or ``close``.
        """
        self.open()
        remote = (remote_host, int(remote_port))
        with self._cond:
            for port, endpoint in self._forwards.items():
                if endpoint == remote and local_port in (0, port):
                    return port
            assert self._loop is not None
            try:
                port = self._loop.add_listener(remote, local_port)
            except OSError as exc:
                raise SSHConfigError(
                    f"cannot listen on 127.0.0.1:{local_port} for {remote_host}:{remote_port}: {exc.strerror};"
                    " pick another local port or 0"
                ) from exc
            self._forwards[port] = remote
            return port

    def unforward(self, local_port: int) -> None:
        """Stop listening on ``local_port`` (streams already accepted go on until they end)."""
        with self._cond:
            if self._forwards.pop(local_port, None) is not None and self._loop is not None:
                self._loop.remove_listener(local_port)

    @property
    def forwards(self) -> dict[int, tuple[str, int]]:
        """Local port -> remote endpoint, for every active forward."""
        with self._cond:
            return dict(self._forwards)

    # -- commands and files ----------------------------------------------------------------------
    def run(
        self, command: str, timeout: float | None = None, *, stdin: bytes | str | None = None
    ) -> RunResult:
        """Run ``command`` on the server (its login shell); return exit status, stdout and stderr (UTF-8).

        Raises SSHTimeout (after closing the channel) if it takes longer than ``timeout`` seconds. A command
        killed by a signal has exit status -1.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        transport = self._live_transport(timeout)
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise SSHChannelError(
                f"{self.target.name} refused to run a command ({exc}); check the server"
            ) from exc
        out, err = bytearray(), bytearray()
        with chan, selectors.DefaultSelector() as selector:
            if stdin is not None:
                chan.sendall(stdin.encode() if isinstance(stdin, str) else stdin)
            chan.shutdown_write()
            selector.register(chan, selectors.EVENT_READ)
            while True:
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                if chan.closed or (chan.exit_status_ready() and chan.eof_received):
                    if not (chan.recv_ready() or chan.recv_stderr_ready()):
                        break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise SSHTimeout(
                        f"command on {self.target.name} did not finish in {timeout:g} s: {command}"
                    )
                selector.select(1.0 if remaining is None else min(remaining, 1.0))
            status = chan.recv_exit_status()
        return RunResult(status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def _sftp(self) -> paramiko.SFTPClient:
        client = paramiko.SFTPClient.from_transport(self._live_transport())
        if client is None:  # pragma: no cover - paramiko returns None only when the subsystem is refused
            raise SSHChannelError(
                f"{self.target.name} refused SFTP; enable 'Subsystem sftp' in its sshd_config"
            )
        return client

    @staticmethod
    def _remote_path(path: str) -> str:
        return path[2:] if path.startswith("~/") else path

    def put(self, local: str | os.PathLike[str], remote: str, mode: int = 0o600) -> None:
        """Copy a local file to ``remote`` (relative paths and ``~/`` are under the remote home).

        The mode is set before any byte is written, so a secret (a connection file) is never readable by
        others, not even briefly.
        """
        with (
            self._sftp() as sftp,
            open(local, "rb") as source,
            sftp.open(self._remote_path(remote), "wb") as dest,
        ):
            dest.chmod(mode)
            dest.set_pipelined(True)
            while chunk := source.read(1 << 18):
                dest.write(chunk)

    def get(self, remote: str, local: str | os.PathLike[str], mode: int = 0o600) -> None:
        """Copy ``remote`` to a local file created with ``mode`` (default 0600: copies may be secrets)."""
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.fchmod(fd, stat.S_IMODE(mode))
        with (
            self._sftp() as sftp,
            os.fdopen(fd, "wb") as dest,
            sftp.open(self._remote_path(remote), "rb") as src,
        ):
            src.prefetch()
            while chunk := src.read(1 << 18):
                dest.write(chunk)

    # -- closing ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Close every forward, the transport and the loop thread; joins them, so no thread is left behind."""
        with self._cond:
            if self._state is TunnelState.CLOSED:
                return
            self._stop.set()
        if self._loop is not None:
            self._loop.stop()
        with self._cond:
            transport, raw = self._transport, self._raw
            self._transport = self._raw = None
            self._forwards.clear()
        self._dispose(transport, raw)
        _forget(self)
        self._set_state(TunnelState.CLOSED)


# -- process-wide registry: one connection per server -------------------------------------------------
_registry: dict[object, SSHConnection] = {}
_registry_lock = threading.RLock()


def _registry_key(server: str, ssh_config: object, known_hosts: object) -> object:
    target = resolve_target(server, ssh_config, known_hosts)  # type: ignore[arg-type]
    return (target.user, target.hostname, target.port, str(ssh_config or ""), str(known_hosts or ""))


def get_connection(server: str, **options: object) -> SSHConnection:
    """The shared connection to ``server`` (created unopened if there is none, or if it failed or closed).

    Every caller in the process gets the same transport for the same user, host, port and config files, so
    all tunnels to a controller share one SSH connection. Options apply when the connection is created;
    a later call with other options gets the existing connection.
    """
    key = _registry_key(server, options.get("ssh_config"), options.get("known_hosts"))
    with _registry_lock:
        conn = _registry.get(key)
        if conn is not None and conn.state not in (TunnelState.FAILED, TunnelState.CLOSED):
            return conn
        if conn is not None:
            conn.close()
        conn = SSHConnection(server, **options)  # type: ignore[arg-type]
        conn._registry_key = key
        _registry[key] = conn
        return conn


def _forget(conn: SSHConnection) -> None:
    with _registry_lock:
        if _registry.get(conn._registry_key) is conn:
            del _registry[conn._registry_key]


def close_all() -> None:
    """Close every shared connection (called at interpreter exit too)."""
    with _registry_lock:
        conns = list(_registry.values())
    for conn in conns:
        conn.close()


atexit.register(close_all)
