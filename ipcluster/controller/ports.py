"""Binding the controller's sockets: random ports, a fixed registration port, or a LO-HI range.

Every controller socket binds; a port that is taken is reported as one line naming the port and the fix.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import tempfile

import zmq

from ipcluster.error import ConfigError

_IPC_MAX = int(getattr(zmq, "IPC_PATH_MAX_LEN", 107) or 107) - 1


class PortInUse(ConfigError):
    """A port the controller must bind is taken by another process."""


class PortBinder:
    """Binds sockets on ``transport://ip`` and hands out ports (tcp) or socket paths (ipc).

    With ``port_range`` every port comes from that range (for firewalls that open only a range); a range
    too small for the controller's sockets is a ConfigError.
    """

    def __init__(
        self,
        transport: str,
        ip: str,
        port_range: tuple[int, int] | None = None,
        ipc_dir: str | None = None,
        ipc_prefix: str = "ipcontroller-",
    ) -> None:
        self.transport = transport
        self.ip = "*" if ip in ("0.0.0.0", "*") else ip
        self.port_range = port_range
        self.ipc_dir = ipc_dir
        self.ipc_prefix = ipc_prefix
        self._tmpdir: str | None = None
        self._used: set[int] = set()
        self._ipc_count = 0

    def bind(self, sock: zmq.Socket, port: int | str = 0, name: str = "") -> int | str:
        """Bind ``sock``; ``port`` 0 picks one. Returns the port (tcp) or the path (ipc, named after ``name``)."""
        if self.transport == "ipc":
            return self._bind_ipc(sock, port, name)
        if port:
            self._bind_fixed(sock, int(port))
            return int(port)
        if self.port_range is None:
            try:
                return sock.bind_to_random_port(f"{self.transport}://{self.ip}")
            except zmq.ZMQError as exc:
                raise ConfigError(f"cannot bind on {self.ip}: {exc}; check --ip") from exc
        return self._bind_from_range(sock)

    def _bind_fixed(self, sock: zmq.Socket, port: int) -> None:
        try:
            sock.bind(f"{self.transport}://{self.ip}:{port}")
        except zmq.ZMQError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {port} on {self.ip} is already in use (another ipcontroller?); stop that process "
                    "or choose another port with --port / --ports"
                ) from None
            raise ConfigError(f"cannot bind port {port} on {self.ip}: {exc}; check --ip and --port") from exc
        self._used.add(port)

    def _bind_from_range(self, sock: zmq.Socket) -> int:
        lo, hi = self.port_range  # type: ignore[misc]
        candidates = [p for p in range(lo, hi + 1) if p not in self._used]
        random.shuffle(candidates)
        for port in candidates:
            try:
                sock.bind(f"{self.transport}://{self.ip}:{port}")
            except zmq.ZMQError as exc:
                if exc.errno == errno.EADDRINUSE:
                    continue
                raise ConfigError(f"cannot bind port {port} on {self.ip}: {exc}; check --ip") from exc
            self._used.add(port)
            return port
        raise PortInUse(
            f"no free port left in --ports {lo}-{hi} (the controller needs 12); widen the range or free ports"
        )

    def _bind_ipc(self, sock: zmq.Socket, port: int | str, name: str) -> str:
        if port and not isinstance(port, int):
            path = str(port)
        else:
            self._ipc_count += 1
            leaf = f"{self.ipc_prefix}{name or self._ipc_count}.ipc"
            if self.ipc_dir is None or len(os.path.join(self.ipc_dir, leaf)) > _IPC_MAX:
                # socket paths are limited to ~107 bytes: fall back to a private (0700) temp dir
                self.ipc_dir = self._tmpdir = self._tmpdir or tempfile.mkdtemp(prefix="ipc-")
            path = os.path.join(self.ipc_dir, leaf)
        try:
            sock.bind(f"ipc://{path}")
        except zmq.ZMQError as exc:
            raise ConfigError(f"cannot bind ipc socket {path}: {exc}") from exc
        return path

    def cleanup(self) -> None:
        """Remove the temp directory made for ipc sockets, if any."""
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)


def parse_port_range(text: str) -> tuple[int, int]:
    """``"LO-HI"`` → (lo, hi); ValueError with the expected form otherwise."""
    try:
        lo_s, hi_s = text.split("-", 1)
        lo, hi = int(lo_s), int(hi_s)
    except ValueError:
        raise ValueError(f"{text!r} is not a port range; write it as LO-HI, e.g. 50000-50100") from None
    if not (1 <= lo <= hi <= 65535):
        raise ValueError(f"port range {text!r} must satisfy 1 <= LO <= HI <= 65535")
    return lo, hi
