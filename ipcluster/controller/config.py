"""Every ipcontroller option with its default, in one place (docs/controller.md lists them for users)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SCHEMES = ("leastload", "lru", "plainrandom", "twobin", "weighted")
DB_BACKENDS = ("dict", "sqlite")
WILDCARD_IPS = ("0.0.0.0", "*", "::")


@dataclass
class ControllerConfig:
    """The controller's settings, validated once by the app and then passed down as a typed object."""

    profile_dir: Path = field(default_factory=lambda: Path("."))
    cluster_id: str = ""
    ip: str = "127.0.0.1"
    transport: str = "tcp"
    port: int = 0  # registration port; 0 = random
    port_range: tuple[int, int] | None = None  # every port from LO-HI
    location: str = ""
    ssh: str = ""
    enginessh: str = ""
    hb_period: int = 1000  # ms between pings
    hb_misses: int = 3  # consecutive missed beats before an engine fails
    disconnect_grace: int = 0  # ms a disconnected heart may take to pong again before its engine fails
    scheme: str = "leastload"
    hwm: int = 0  # max outstanding load-balanced tasks per engine; 0 = unlimited
    reuse: bool = False
    secure: bool = True
    signature_scheme: str = "hmac-sha256"
    db: str = "dict"
    db_path: Path | None = None  # sqlite file; default <profile>/log/tasks.db
    task_retention: int = 100_000  # completed task records kept by the dict DB (and scheduler history)
    task_retention_bytes: int = 256 * 2**20  # result buffers kept by the dict DB, oldest dropped first
    shutdown_delay: float = 1.0  # seconds between shutdown_reply and exit
    log_level: str = "INFO"

    @property
    def registration_timeout_ms(self) -> int:
        """How long a registration may wait for its first pong before it is purged (protocol §5).

        Long enough to outlast TCP's SYN retries (1, 3, 7, 15 s) when thousands of engines connect at once
        and the listen queue overflows; a repeated registration_request restarts the wait.
        """
        return max(30_000, 5 * self.hb_period)

    @property
    def bind_wildcard(self) -> bool:
        return self.ip in WILDCARD_IPS
