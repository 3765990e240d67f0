"""The errors the SSH layer raises.

Each one's ``str`` is a single line that names the host and says what to do, because it ends up in front of
a user (``ipengine --ssh node1`` failing) far from the code that raised it. They all derive from
:class:`SSHError`, itself an :class:`ipcluster.error.IPClusterError`, so callers can catch the whole family.
"""

from __future__ import annotations

import builtins

from ipcluster.error import IPClusterError

__all__ = [
    "SSHError",
    "SSHConfigError",
    "SSHConnectError",
    "SSHHostKeyError",
    "UnknownHostKey",
    "ChangedHostKey",
    "SSHAuthError",
    "SSHKeyFileError",
    "SSHChannelError",
    "SSHTimeout",
    "TunnelDown",
]


class SSHError(IPClusterError):
    """Base of every SSH failure; the message is one line naming the host and the fix."""


class SSHConfigError(SSHError, ValueError):
    """A server name, URL or option could not be understood (before any network traffic)."""


class SSHConnectError(SSHError):
    """The SSH server could not be reached: unresolvable name, refused or timed-out TCP connect, bad banner."""


class SSHHostKeyError(SSHError):
    """The server's host key could not be verified against known_hosts."""


class UnknownHostKey(SSHHostKeyError):
    """No key is recorded for this host; with ``host_key_policy="accept-new"`` it would have been added."""


class ChangedHostKey(SSHHostKeyError):
    """The recorded key differs from the one the server offers: refused under every policy."""


class SSHAuthError(SSHError):
    """The server refused every key and password we could offer."""


class SSHKeyFileError(SSHError):
    """An explicitly named private key file is missing, unreadable, or needs a passphrase we do not have."""


class SSHChannelError(SSHError):
    """The server refused to open a channel (a forward to an endpoint it cannot reach, or a session)."""


class SSHTimeout(SSHError, builtins.TimeoutError):
    """A remote command or a wait for the connection took longer than its timeout."""


class TunnelDown(SSHError):
    """The connection is reconnecting or has failed, so the operation could not be carried out now."""
