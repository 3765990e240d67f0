"""Connection files: the versioned JSON a controller writes and engines and clients read.

Written atomically (a temp file in the same directory, then rename) with mode 0600, so a reader never sees
half a file and no other user can read the key. Schema: docs/protocol.md §9.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Any

from ipcluster.error import ConnectionFileError

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("version", "key", "signature_scheme", "transport", "interface", "registration")
WILDCARDS = ("0.0.0.0", "*", "::", "")


def new_key() -> str:
    """A fresh shared secret: 256 random bits, hex."""
    return secrets.token_hex(32)


def write_atomic(path: Path, text: str, mode: int = 0o600) -> Path:
    """Write ``text`` to ``path`` through a temp file and a rename, so a reader never sees half a file.

    The temp file gets ``mode`` before any byte is written, so a secret is never readable by others.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def write_connection_file(path: Path | str, info: dict[str, Any]) -> Path:
    """Write ``info`` atomically with mode 0600 (and its directory 0700)."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {"version": SCHEMA_VERSION, **info}
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_connection_file(path: Path | str, check_permissions: bool = True) -> dict[str, Any]:
    """Load and validate a connection file; every problem is one ConnectionFileError line with the fix."""
    path = Path(path).expanduser()
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConnectionFileError(
            f"connection file {path} does not exist; start the controller first (ipcluster start), "
            "or pass the right --profile / --cluster-id / --file"
        ) from None
    if check_permissions and os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConnectionFileError(
            f"connection file {path} is readable by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"it holds the cluster key: run chmod 600 {path}"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConnectionFileError(
            f"connection file {path} is not valid JSON ({exc}); restart the controller"
        ) from exc
    return validate_connection_info(data, source=str(path))


def validate_connection_info(data: Any, source: str = "connection info") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConnectionFileError(f"{source} must be a JSON object")
    version = data.get("version")
    if version != SCHEMA_VERSION:
        raise ConnectionFileError(
            f"{source} has schema version {version!r}; this ipcluster reads version {SCHEMA_VERSION}: "
            "restart the controller with this ipcluster version"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ConnectionFileError(
            f"{source} lacks {', '.join(missing)}; restart the controller to rewrite it"
        )
    return data


def connect_host(info: dict[str, Any]) -> str:
    """The host a peer should connect to: the bound interface, or ``location`` when bound to a wildcard."""
    iface = str(info.get("interface", "127.0.0.1"))
    if iface in WILDCARDS:
        return str(info.get("location") or "127.0.0.1")
    return iface


def url_for(info: dict[str, Any], channel: str) -> str:
    """The zmq url of a channel (``registration``, ``mux``, ``hb_ping`` ...) named in the connection info."""
    port = info.get(channel)
    if port is None:
        raise ConnectionFileError(f"connection info has no {channel!r} port")
    transport = info.get("transport", "tcp")
    if transport == "ipc":
        return f"ipc://{port}"
    return f"{transport}://{connect_host(info)}:{port}"
