"""The calls the client and engine make: turn controller URLs into local ones through a shared connection.

A URL names the endpoint as the SSH server sees it (``tcp://127.0.0.1:5555`` is the controller's own
loopback). The returned URL is on this machine's 127.0.0.1, forwarded over the one connection per server
from :func:`get_connection`, so every socket of a client shares one SSH transport and heals with it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

from ipcluster.tunnel.connection import SSHConnection, TunnelState, get_connection
from ipcluster.tunnel.errors import SSHAuthError, SSHConfigError, SSHKeyFileError

__all__ = ["parse_tcp_url", "tunnel_url", "open_tunnels", "tunnel_connection", "try_passwordless_ssh"]

_TCP_URL = re.compile(r"^tcp://(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\[\]]+)):(?P<port>\d+)/?$")
_WILDCARDS = {"*", "0.0.0.0", "::", ""}


def parse_tcp_url(url: str) -> tuple[str, int]:
    """``tcp://host:port`` -> ``(host, port)``; a wildcard bind address means the server's own loopback."""
    match = _TCP_URL.match(url.strip())
    if match is None:
        raise SSHConfigError(f"cannot tunnel {url!r}: only tcp://host:port URLs can go through SSH")
    host = match["v6"] or match["host"]
    return ("127.0.0.1" if host in _WILDCARDS else host), int(match["port"])


def tunnel_url(
    url: str,
    server: str,
    keyfile: str | os.PathLike[str] | None = None,
    password: str | None = None,
    host_key_policy: str | None = "strict",
    **options: Any,
) -> str:
    """Forward ``url`` (as seen from ``server``) and return the local ``tcp://127.0.0.1:<port>`` to use.

    The connection is opened now, so host key, authentication and reachability errors are raised here as
    one-line :class:`SSHError` messages. Extra ``options`` go to :class:`SSHConnection` when the shared
    connection is created.
    """
    host, port = parse_tcp_url(url)
    conn = get_connection(
        server, keyfile=keyfile, password=password, host_key_policy=host_key_policy, **options
    )
    return f"tcp://127.0.0.1:{conn.forward(host, port)}"


def open_tunnels(
    urls: Iterable[str],
    server: str,
    keyfile: str | os.PathLike[str] | None = None,
    password: str | None = None,
    host_key_policy: str | None = "strict",
    **options: Any,
) -> list[str]:
    """:func:`tunnel_url` for each URL, in order, all over the same connection."""
    return [tunnel_url(u, server, keyfile, password, host_key_policy, **options) for u in urls]


def tunnel_connection(socket: Any, url: str, server: str, **options: Any) -> str:
    """Connect ``socket`` (anything with ``connect(url)``, e.g. a zmq socket) to ``url`` through ``server``.

    Returns the local URL it connected to (seed-compatible name; zmq itself is not imported here).
    """
    local = tunnel_url(url, server, **options)
    socket.connect(local)
    return local


def try_passwordless_ssh(server: str, keyfile: str | os.PathLike[str] | None = None, **options: Any) -> bool:
    """True if ``server`` accepts us with keys (agent or files) alone, without a password or prompt.

    Host key and unreachable-server errors are raised, not turned into False: they need the user's action
    either way. A successful connection stays in the registry for the tunnels that follow.
    """
    options.update(password=None, password_callback=None, interactive=False)
    conn: SSHConnection = get_connection(server, keyfile=keyfile, **options)
    if conn.state is TunnelState.UP:
        return True
    try:
        conn.open()
    except (SSHAuthError, SSHKeyFileError):
        conn.close()
        return False
    return True
