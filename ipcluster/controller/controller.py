"""The controller process: binds every socket, wires hub, heart monitor, relays and scheduler on one loop.

``Controller(config).run()`` serves until ``stop()`` (SIGTERM/SIGINT or a hub shutdown_request), then
publishes nothing more, closes every socket with linger 0 and removes its connection files (unless
``reuse``, so a restarted controller comes back on the same key and ports).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket as pysocket
import sys
from typing import Any

import zmq

from ipcluster.error import ConnectionFileError
from ipcluster.profiles import ProfileDir, new_key, read_connection_file, write_connection_file
from ipcluster.wire import Session

from .config import ControllerConfig
from .heartbeat import HeartMonitor
from .hub import Hub
from .ports import PortBinder
from .relays import DirectRelay, IOPubRelay
from .scheduler import TaskScheduler
from .taskdb import BaseDB, DictDB, SQLiteDB

log = logging.getLogger("ipcluster.controller")

# the relayed channels: each has a client-facing and an engine-facing ROUTER
RELAY_CHANNELS = ("mux", "task", "control")


def listen_backlog(wanted: int = 4096) -> int:
    """The listen queue for bound sockets: zmq's default (100) overflows when thousands of engines
    connect at once; the kernel caps it at net.core.somaxconn anyway."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return max(100, min(wanted, int(f.read().strip())))
    except (OSError, ValueError):
        return wanted


def _default_location(ip: str) -> str:
    if ip not in ("0.0.0.0", "*", "::"):
        return ip
    try:
        return pysocket.gethostbyname(pysocket.gethostname())
    except OSError:
        return "127.0.0.1"


class Controller:
    """One controller: owns the zmq context, its sockets and the objects that serve them."""

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.profile = ProfileDir(config.profile_dir).ensure()
        self.client_file = self.profile.connection_file("client", config.cluster_id)
        self.engine_file = self.profile.connection_file("engine", config.cluster_id)
        self.ctx = zmq.Context()
        self.sockets: list[zmq.Socket] = []
        self.backlog = listen_backlog()
        self.ports: dict[str, Any] = {}
        self.engine_ports: dict[str, Any] = {}
        self._stopped: asyncio.Event | None = None
        self.binder: PortBinder | None = None
        self.key, reused = self._key_and_ports()
        self.session = Session(
            self.key if config.secure else "", config.signature_scheme if config.secure else "none"
        )
        self._reused_ports = reused

    # -- setup ------------------------------------------------------------------------------------------

    def _key_and_ports(self) -> tuple[str, dict[str, dict[str, Any]]]:
        """A new key, or with ``reuse`` the key and ports of valid existing connection files."""
        if not (self.config.reuse and self.client_file.exists() and self.engine_file.exists()):
            return new_key(), {}
        try:
            client = read_connection_file(self.client_file)
            engine = read_connection_file(self.engine_file)
        except ConnectionFileError as exc:
            log.warning("not reusing connection files: %s", exc)
            return new_key(), {}
        if client.get("key") != engine.get("key") or client.get("transport") != self.config.transport:
            log.warning("not reusing connection files: they disagree with each other or with --transport")
            return new_key(), {}
        return str(client["key"]), {"client": client, "engine": engine}

    def _socket(self, kind: int, relay: bool = False, engine_facing: bool = False) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.linger = 0
        sock.setsockopt(zmq.BACKLOG, self.backlog)
        if kind == zmq.ROUTER:
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
            if engine_facing:
                sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        if relay:
            sock.sndhwm = 0
            sock.rcvhwm = 0
        self.sockets.append(sock)
        return sock

    def bind_all(self) -> None:
        """Create and bind every socket (docs/protocol.md §3); raises PortInUse / ConfigError."""
        cfg = self.config
        prefix = f"ipcontroller-{cfg.cluster_id}-" if cfg.cluster_id else "ipcontroller-"
        binder = self.binder = PortBinder(
            cfg.transport, cfg.ip, cfg.port_range, str(self.profile.security_dir), prefix
        )
        old_c = self._reused_ports.get("client", {})
        old_e = self._reused_ports.get("engine", {})

        self.registration = self._socket(zmq.ROUTER, relay=True)
        self.ports["registration"] = binder.bind(
            self.registration, cfg.port or old_c.get("registration", 0), "registration"
        )
        self.engine_ports["registration"] = self.ports["registration"]
        self.notification = self._socket(zmq.PUB, relay=True)
        self.ports["notification"] = binder.bind(
            self.notification, old_c.get("notification", 0), "notification"
        )
        self.relay_sockets: dict[str, tuple[zmq.Socket, zmq.Socket]] = {}
        for name in RELAY_CHANNELS:
            client_side = self._socket(zmq.ROUTER, relay=True)
            engine_side = self._socket(zmq.ROUTER, relay=True, engine_facing=True)
            self.ports[name] = binder.bind(client_side, old_c.get(name, 0), f"{name}-client")
            self.engine_ports[name] = binder.bind(engine_side, old_e.get(name, 0), f"{name}-engine")
            self.relay_sockets[name] = (client_side, engine_side)
        self.iopub_pub = self._socket(zmq.PUB, relay=True)
        self.iopub_sub = self._socket(zmq.SUB, relay=True)
        self.ports["iopub"] = binder.bind(self.iopub_pub, old_c.get("iopub", 0), "iopub-client")
        self.engine_ports["iopub"] = binder.bind(self.iopub_sub, old_e.get("iopub", 0), "iopub-engine")
        self.hb_ping = self._socket(zmq.PUB)
        self.hb_pong = self._socket(zmq.ROUTER)
        self.engine_ports["hb_ping"] = binder.bind(self.hb_ping, old_e.get("hb_ping", 0), "hb-ping")
        self.engine_ports["hb_pong"] = binder.bind(self.hb_pong, old_e.get("hb_pong", 0), "hb-pong")

    def _make_db(self) -> BaseDB:
        if self.config.db == "sqlite":
            path = self.config.db_path or self.profile.log_dir / "tasks.db"
            return SQLiteDB(path)
        return DictDB(self.config.task_retention, self.config.task_retention_bytes)

    def connection_info(self, role: str) -> dict[str, Any]:
        """The contents of one connection file (docs/protocol.md §9)."""
        cfg = self.config
        ports = self.ports if role == "client" else self.engine_ports
        interface = cfg.ip if cfg.transport != "ipc" else ""
        location = cfg.location or _default_location(cfg.ip)
        host = location if cfg.ip in ("0.0.0.0", "*", "::") else cfg.ip
        info: dict[str, Any] = {
            "key": self.key if cfg.secure else "",
            "signature_scheme": cfg.signature_scheme if cfg.secure else "none",
            "transport": cfg.transport,
            "interface": interface,
            "location": location,
            "ssh": cfg.ssh if role == "client" else cfg.enginessh,
            "registration": ports["registration"],
            "mux": ports["mux"],
            "task": ports["task"],
            "control": ports["control"],
            "iopub": ports["iopub"],
            "task_scheme": cfg.scheme,
            "hb_period": cfg.hb_period,
            "url": f"ipc://{ports['registration']}"
            if cfg.transport == "ipc"
            else f"{cfg.transport}://{host}:{ports['registration']}",
            "cluster_id": cfg.cluster_id,
            "controller_pid": os.getpid(),
        }
        if role == "client":
            info["notification"] = ports["notification"]
        else:
            info.update(hb_ping=ports["hb_ping"], hb_pong=ports["hb_pong"], hb_misses=cfg.hb_misses)
        return info

    def write_connection_files(self) -> None:
        write_connection_file(self.engine_file, self.connection_info("engine"))
        write_connection_file(self.client_file, self.connection_info("client"))

    def remove_connection_files(self) -> None:
        for path in (self.client_file, self.engine_file):
            try:
                if read_connection_file(path, check_permissions=False).get("controller_pid") == os.getpid():
                    path.unlink()
            except (ConnectionFileError, OSError):
                pass

    # -- running ----------------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Bind, announce, serve until stopped, clean up."""
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        cfg = self.config
        self.bind_all()
        self.db = self._make_db()
        self.hub = Hub(cfg, self.session, self.registration, self.notification, self.db, loop, self.stop)
        self.heart = HeartMonitor(
            self.session,
            self.hb_ping,
            self.hb_pong,
            cfg.hb_period,
            cfg.hb_misses,
            self.hub.on_new_heart,
            self.hub.on_heart_failure,
            loop,
            cfg.disconnect_grace,
        )
        self.hub.heart = self.heart
        mux_c, mux_e = self.relay_sockets["mux"]
        ctl_c, ctl_e = self.relay_sockets["control"]
        task_c, task_e = self.relay_sockets["task"]
        self.mux = DirectRelay("mux", self.session, self.hub, mux_c, mux_e, loop)
        self.control = DirectRelay("control", self.session, self.hub, ctl_c, ctl_e, loop)
        self.scheduler = TaskScheduler(
            self.session, self.hub, task_c, task_e, loop, cfg.scheme, cfg.hwm, cfg.task_retention
        )
        self.hub.scheduler = self.scheduler
        self.iopub = IOPubRelay(self.session, self.hub, self.iopub_sub, self.iopub_pub, loop)
        parts = (self.hub, self.heart, self.mux, self.control, self.scheduler, self.iopub)
        for part in parts:
            part.start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.stop)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread / Windows
                pass
        flusher = asyncio.create_task(self._flush_db())
        try:
            self.write_connection_files()
            log.info(
                "listening: registration %s, scheme %s, hwm %d, ping %d ms, db %s",
                self.ports["registration"],
                cfg.scheme,
                cfg.hwm,
                cfg.hb_period,
                cfg.db,
            )
            sys.stderr.write(f"ipcontroller ready: {self.client_file}\n")
            sys.stderr.flush()
            await self._stopped.wait()
            self.hub.announce_shutdown()
        finally:
            flusher.cancel()
            for part in parts:
                part.stop()
            self.db.close()
            if not cfg.reuse:
                self.remove_connection_files()
            self.close()
            log.info("controller stopped")

    async def _flush_db(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            self.db.flush()

    def stop(self) -> None:
        if self._stopped is not None:
            self._stopped.set()

    def close(self) -> None:
        for sock in self.sockets:
            # the notification PUB gets a moment to deliver shutdown_notification; nothing else lingers
            sock.close(linger=500 if sock is getattr(self, "notification", None) else 0)
        self.ctx.term()
        if self.binder is not None:
            self.binder.cleanup()


def run(config: ControllerConfig) -> None:
    """Run a controller in this process until it is stopped (blocking)."""
    controller = Controller(config)
    try:
        asyncio.run(controller.serve())
    finally:
        if not controller.ctx.closed:
            controller.close()
