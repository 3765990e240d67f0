"""Host key verification against known_hosts, with the ``strict`` and ``accept-new`` policies.

A tunnel carries the cluster's signed messages and the SSH launcher copies connection files holding the
key, so a man in the middle must be refused: an unknown key is refused unless the caller opted in to
``accept-new`` (which records it, like OpenSSH's ``StrictHostKeyChecking=accept-new``), and a changed key is
refused always.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence

import paramiko

from ipcluster.tunnel.config import SSHTarget, tilde
from ipcluster.tunnel.errors import ChangedHostKey, SSHConfigError, UnknownHostKey

__all__ = ["HOST_KEY_POLICIES", "KnownHosts", "check_policy", "fingerprint", "verify_host_key"]

HOST_KEY_POLICIES = ("strict", "accept-new")

# the signature algorithms that can prove possession of a known_hosts key type
_ALGORITHMS = {
    "ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"),
    "ssh-ed25519": ("ssh-ed25519",),
    "ecdsa-sha2-nistp256": ("ecdsa-sha2-nistp256",),
    "ecdsa-sha2-nistp384": ("ecdsa-sha2-nistp384",),
    "ecdsa-sha2-nistp521": ("ecdsa-sha2-nistp521",),
}


def check_policy(policy: str) -> str:
    """Validate a host key policy name (``strict`` or ``accept-new``) and return it."""
    if policy not in HOST_KEY_POLICIES:
        raise SSHConfigError(
            f"unknown host key policy {policy!r}; use one of: {', '.join(HOST_KEY_POLICIES)}"
        )
    return policy


def fingerprint(key: paramiko.PKey) -> str:
    """The ``SHA256:...`` fingerprint OpenSSH prints, so users can compare it with ``ssh-keygen -lf``."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class KnownHosts:
    """The keys recorded in a list of known_hosts files (missing files count as empty)."""

    def __init__(self, files: Sequence[str]) -> None:
        self.files = tuple(files)
        self._keys = paramiko.HostKeys()
        for path in self.files:
            if os.path.isfile(path):
                try:
                    self._keys.load(path)
                except (OSError, UnicodeDecodeError):
                    continue

    def keys_for(self, name: str) -> dict[str, paramiko.PKey]:
        """Recorded keys for ``name`` (``host`` or ``[host]:port``, hashed entries included) by key type."""
        entry = self._keys.lookup(name)
        return dict(entry) if entry else {}

    def preferred_algorithms(self, name: str, offered: Sequence[str]) -> tuple[str, ...]:
        """``offered`` reordered so the server signs with a key type we already know for ``name``."""
        first: list[str] = []
        for key_type in self.keys_for(name):
            first.extend(a for a in _ALGORITHMS.get(key_type, (key_type,)) if a in offered and a not in first)
        return tuple(first) + tuple(a for a in offered if a not in first)

    def add(self, name: str, key: paramiko.PKey) -> str:
        """Append ``name key`` to the first known_hosts file (created 0600 in a 0700 dir); return its path."""
        path = self.files[0]
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as stream:
            if stream.tell() > 0:
                with open(path, "rb") as existing:
                    existing.seek(-1, os.SEEK_END)
                    if existing.read(1) != b"\n":
                        stream.write("\n")
            stream.write(f"{name} {key.get_name()} {key.get_base64()}\n")
        self._keys.add(name, key.get_name(), key)
        return path


def verify_host_key(
    target: SSHTarget, key: paramiko.PKey, policy: str, known: KnownHosts | None = None
) -> None:
    """Accept ``key`` for ``target`` or raise UnknownHostKey / ChangedHostKey with a one-line fix."""
    known = known or KnownHosts(target.known_hosts_files)
    name = target.known_hosts_name
    recorded = known.keys_for(name)
    where = tilde(known.files[0]) if known.files else "known_hosts"
    label = target.name if target.name == name else f"{target.name} ({name})"
    if not recorded:
        if policy == "accept-new" and known.files:
            known.add(name, key)
            return
        raise UnknownHostKey(
            f"host key for {label} is not in {where}; connect once with ssh, or pass --ssh-accept-new"
            f" (host_key_policy='accept-new') to record {key.get_name()} {fingerprint(key)}"
        )
    same = recorded.get(key.get_name())
    if same is not None and same.asbytes() == key.asbytes():
        return
    raise ChangedHostKey(
        f"host key for {label} has changed (server offers {key.get_name()} {fingerprint(key)}, {where} records"
        f" another); if the host was really reinstalled, run: ssh-keygen -R '{name}' -f {where}"
    )
