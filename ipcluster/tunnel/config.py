"""Turn a server name into the address, user and files to use: ``[user@]host[:port]`` or an ssh_config alias.

OpenSSH users already describe their hosts in ``~/.ssh/config``; honouring HostName, User, Port,
IdentityFile, ProxyJump/ProxyCommand, UserKnownHostsFile, StrictHostKeyChecking, ConnectTimeout and
ServerAliveInterval means ``--ssh node1`` does here what ``ssh node1`` does in a shell. Resolution reads
files only; it never touches the network.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ipcluster.tunnel.errors import SSHConfigError

__all__ = ["SSHTarget", "parse_server", "resolve_target", "default_ssh_config", "tilde"]

_SERVER_RE = re.compile(
    r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@\s\[\]]+))(?::(?P<port>\d+))?$"
)


@dataclass(frozen=True)
class SSHTarget:
    """Everything needed to open one SSH connection, after ssh_config was applied.

    ``name`` is what the user wrote (without user and port), kept for messages; ``hostname``/``port`` is where
    TCP goes; ``known_hosts_files`` are read in order and the first is the one ``accept-new`` writes to.
    """

    name: str
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    known_hosts_files: tuple[str, ...] = ()
    proxy_jump: str | None = None
    proxy_command: str | None = None
    strict_host_key_checking: str | None = None
    connect_timeout: float | None = None
    server_alive_interval: float | None = None

    @property
    def known_hosts_name(self) -> str:
        """The name OpenSSH records this server under in known_hosts (``host`` or ``[host]:port``)."""
        return self.hostname if self.port == 22 else f"[{self.hostname}]:{self.port}"

    def __str__(self) -> str:
        port = "" if self.port == 22 else f":{self.port}"
        return f"{self.user}@{self.name}{port}"


def tilde(path: str | os.PathLike[str]) -> str:
    """Show a path under the home directory as ``~/...``, the way users write it in messages."""
    text = str(path)
    home = os.path.expanduser("~")
    if home not in ("", "/") and (text == home or text.startswith(home + os.sep)):
        return "~" + text[len(home) :]
    return text


def parse_server(server: str) -> tuple[str | None, str, int | None]:
    """Split ``[ssh://][user@]host[:port]`` (``[v6addr]:port`` too) into ``(user, host, port)``."""
    text = server.strip()
    if text.startswith("ssh://"):
        text = text[len("ssh://") :].rstrip("/")
    match = _SERVER_RE.match(text)
    if not text or match is None:
        raise SSHConfigError(
            f"cannot understand SSH server {server!r}; write it as [user@]host[:port] or an alias"
        )
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port < 65536:
        raise SSHConfigError(f"SSH port {port} in {server!r} is out of range; use 1-65535")
    return match["user"], match["v6"] or match["host"], port


def default_ssh_config() -> Path | None:
    """The user's ``~/.ssh/config`` if it exists."""
    path = Path(os.path.expanduser("~/.ssh/config"))
    return path if path.is_file() else None


def _load_config(ssh_config: str | os.PathLike[str] | None) -> paramiko.SSHConfig:
    path = Path(os.path.expanduser(str(ssh_config))) if ssh_config else default_ssh_config()
    if path is None:
        return paramiko.SSHConfig()
    try:
        return paramiko.SSHConfig.from_path(str(path))
    except OSError as exc:
        raise SSHConfigError(f"cannot read ssh_config {tilde(path)}: {exc.strerror}; fix or omit it") from exc
    except Exception as exc:  # paramiko raises ConfigParseError and friends
        raise SSHConfigError(f"cannot parse ssh_config {tilde(path)}: {exc}; fix the file") from exc


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def resolve_target(
    server: str,
    ssh_config: str | os.PathLike[str] | None = None,
    known_hosts: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None,
) -> SSHTarget:
    """Apply ssh_config (``ssh_config`` or ``~/.ssh/config``) to ``server`` and return the resolved target.

    A user or port written in ``server`` wins over the config, as with ``ssh``. ``known_hosts`` (one file or
    a list) replaces UserKnownHostsFile; without either, ``~/.ssh/known_hosts`` then the system-wide file.
    """
    user, host, port = parse_server(server)
    found = _load_config(ssh_config).lookup(host)
    try:
        config_port = int(found["port"]) if "port" in found else 22
    except ValueError as exc:
        raise SSHConfigError(
            f"ssh_config Port for {host} is not a number; fix the Host {host} block"
        ) from exc
    if known_hosts is not None:
        entries = [known_hosts] if isinstance(known_hosts, (str, os.PathLike)) else list(known_hosts)
        known = tuple(os.path.expanduser(str(p)) for p in entries)
    elif "userknownhostsfile" in found:
        known = tuple(os.path.expanduser(p) for p in found["userknownhostsfile"].split())
    else:
        known = (os.path.expanduser("~/.ssh/known_hosts"), "/etc/ssh/ssh_known_hosts")
    proxy_jump = found.get("proxyjump")
    proxy_command = found.get("proxycommand")
    return SSHTarget(
        name=host,
        hostname=found.get("hostname", host),
        port=port or config_port,
        user=user or found.get("user") or getpass.getuser(),
        identity_files=tuple(os.path.expanduser(p) for p in found.get("identityfile", [])),
        known_hosts_files=known,
        proxy_jump=None if proxy_jump in (None, "none") else proxy_jump.replace(" ", ""),
        proxy_command=None if proxy_command in (None, "none") else proxy_command,
        strict_host_key_checking=found.get("stricthostkeychecking"),
        connect_timeout=_seconds(found.get("connecttimeout")),
        server_alive_interval=_seconds(found.get("serveraliveinterval")),
    )
