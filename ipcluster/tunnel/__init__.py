"""SSH tunnels and remote commands: one self-healing paramiko transport per server.

The tunnel layer knows nothing of zmq roles: it turns an endpoint reachable from an SSH server into a local
one (``tunnel_url``), and offers the same connection to the SSH launcher (``run``, ``put``, ``get``).
See docs/tunnel.md.
"""

from ipcluster.tunnel.config import SSHTarget, parse_server, resolve_target
from ipcluster.tunnel.connection import (
    RunResult,
    SSHConnection,
    TunnelState,
    close_all,
    get_connection,
)
from ipcluster.tunnel.errors import (
    ChangedHostKey,
    SSHAuthError,
    SSHChannelError,
    SSHConfigError,
    SSHConnectError,
    SSHError,
    SSHHostKeyError,
    SSHKeyFileError,
    SSHTimeout,
    TunnelDown,
    UnknownHostKey,
)
from ipcluster.tunnel.helpers import (
    open_tunnels,
    parse_tcp_url,
    try_passwordless_ssh,
    tunnel_connection,
    tunnel_url,
)
from ipcluster.tunnel.hostkeys import HOST_KEY_POLICIES, fingerprint

__all__ = [
    "HOST_KEY_POLICIES",
    "ChangedHostKey",
    "RunResult",
    "SSHAuthError",
    "SSHChannelError",
    "SSHConfigError",
    "SSHConnectError",
    "SSHConnection",
    "SSHError",
    "SSHHostKeyError",
    "SSHKeyFileError",
    "SSHTarget",
    "SSHTimeout",
    "TunnelDown",
    "TunnelState",
    "UnknownHostKey",
    "close_all",
    "fingerprint",
    "get_connection",
    "open_tunnels",
    "parse_server",
    "parse_tcp_url",
    "resolve_target",
    "try_passwordless_ssh",
    "tunnel_connection",
    "tunnel_url",
]
