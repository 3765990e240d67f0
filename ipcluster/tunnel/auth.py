"""Client authentication on a started transport: keys from files and the agent, then a password.

The order is OpenSSH's: explicit key files, then the agent, then the default ``~/.ssh/id_*`` keys (only when
no key was named), then a password. A passphrase or password is asked on the terminal only when the
process is interactive, so an engine started by a batch system fails with a message instead of hanging.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import paramiko

from ipcluster.tunnel.config import SSHTarget, tilde
from ipcluster.tunnel.errors import SSHAuthError, SSHKeyFileError

__all__ = ["Credentials", "authenticate", "load_key_file"]

PasswordCallback = Callable[[str], "str | None"]
_DEFAULT_KEYS = ("~/.ssh/id_ed25519", "~/.ssh/id_ecdsa", "~/.ssh/id_rsa")


@dataclass
class Credentials:
    """What we may offer to a server. ``interactive`` allows terminal prompts (default: stdin is a tty)."""

    keyfiles: tuple[str, ...] = ()
    password: str | None = None
    password_callback: PasswordCallback | None = None
    passphrase: str | None = None
    allow_agent: bool = True
    look_for_keys: bool = True
    interactive: bool | None = None
    _cached_password: str | None = field(default=None, repr=False)

    @property
    def may_prompt(self) -> bool:
        if self.interactive is None:
            try:
                return os.isatty(0)
            except OSError:
                return False
        return self.interactive


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def load_key_file(path: str, creds: Credentials, target: SSHTarget, explicit: bool) -> paramiko.PKey | None:
    """Load a private key, asking for its passphrase only when allowed; None for a skippable config key."""
    if not os.path.isfile(path):
        if explicit:
            raise SSHKeyFileError(
                f"key file {tilde(path)} for {target.name} does not exist; pass an existing key (--sshkey)"
                " or create one with ssh-keygen"
            )
        return None
    try:
        return paramiko.PKey.from_path(path, _bytes(creds.passphrase))
    except (paramiko.PasswordRequiredException, TypeError) as exc:
        # paramiko raises PasswordRequiredException for PEM keys, cryptography a TypeError for OpenSSH ones
        if isinstance(exc, TypeError) and "password" not in str(exc):
            raise
        if not creds.may_prompt:
            if explicit:
                raise SSHKeyFileError(
                    f"key file {tilde(path)} for {target.name} needs a passphrase and this process cannot ask;"
                    " load it into ssh-agent (ssh-add) or pass passphrase="
                ) from None
            return None
        phrase = getpass.getpass(f"Passphrase for {tilde(path)}: ")
    except (OSError, paramiko.SSHException, ValueError) as exc:
        if explicit:
            raise SSHKeyFileError(
                f"key file {tilde(path)} for {target.name} cannot be used ({exc}); pass an OpenSSH private key"
            ) from exc
        return None
    try:
        return paramiko.PKey.from_path(path, _bytes(phrase))
    except (paramiko.SSHException, ValueError, TypeError) as exc:
        raise SSHKeyFileError(
            f"wrong passphrase for key file {tilde(path)}; try again or use ssh-agent"
        ) from exc


def _candidate_keys(creds: Credentials, target: SSHTarget) -> list[tuple[str, paramiko.PKey]]:
    keys: list[tuple[str, paramiko.PKey]] = []
    for path in creds.keyfiles:
        key = load_key_file(os.path.expanduser(path), creds, target, explicit=True)
        keys.append((f"key {tilde(path)}", key))  # type: ignore[arg-type]
    for path in target.identity_files:
        key = load_key_file(path, creds, target, explicit=False)
        if key is not None:
            keys.append((f"key {tilde(path)}", key))
    if creds.allow_agent and os.environ.get("SSH_AUTH_SOCK"):
        try:
            keys.extend(("agent key", key) for key in paramiko.Agent().get_keys())
        except paramiko.SSHException:
            pass
    if creds.look_for_keys and not creds.keyfiles and not target.identity_files:
        for path in _DEFAULT_KEYS:
            key = load_key_file(os.path.expanduser(path), creds, target, explicit=False)
            if key is not None:
                keys.append((f"key {path}", key))
    return keys


def _password(creds: Credentials, target: SSHTarget) -> str | None:
    if creds.password is not None:
        return creds.password
    if creds._cached_password is not None:
        return creds._cached_password
    prompt = f"{target.user}@{target.name}'s password: "
    if creds.password_callback is not None:
        answer = creds.password_callback(prompt)
    elif creds.may_prompt:
        answer = getpass.getpass(prompt)
    else:
        return None
    creds._cached_password = answer
    return answer


def _try_password(transport: paramiko.Transport, user: str, password: str) -> bool:
    try:
        transport.auth_password(user, password)
        return transport.is_authenticated()
    except paramiko.BadAuthenticationType as exc:
        if "keyboard-interactive" not in exc.allowed_types:
            return False
    except paramiko.AuthenticationException:
        return False

    def answer(_title: str, _instructions: str, prompts: list[tuple[str, bool]]) -> list[str]:
        return [password if "password" in text.lower() else "" for text, _echo in prompts]

    try:
        transport.auth_interactive(user, answer)
    except paramiko.AuthenticationException:
        return False
    return transport.is_authenticated()


def authenticate(transport: paramiko.Transport, target: SSHTarget, creds: Credentials) -> None:
    """Authenticate ``transport`` as ``target.user`` or raise SSHAuthError naming what was tried."""
    tried: list[str] = []
    allowed: list[str] | None = None
    for label, key in _candidate_keys(creds, target):
        tried.append(label)
        try:
            transport.auth_publickey(target.user, key)
        except paramiko.BadAuthenticationType as exc:
            allowed = list(exc.allowed_types)
            break
        except paramiko.AuthenticationException:
            continue
        if transport.is_authenticated():
            return
    password = _password(creds, target)
    if password is not None and (allowed is None or {"password", "keyboard-interactive"} & set(allowed)):
        tried.append("password")
        if _try_password(transport, target.user, password):
            return
        creds._cached_password = None
    what = ", ".join(tried) if tried else "no key or password available"
    raise SSHAuthError(
        f"authentication to {target.user}@{target.name} failed (tried: {what}); add your public key to"
        f" ~{target.user}/.ssh/authorized_keys on {target.name}, or pass the right key (--sshkey) or a password"
    )
