"""Finding the controller: a profile, a connection file or its dict, and the SSH decision.

The seed's location rule (SPEC.md §2), with its bug fixed: the file's ``ssh`` server is used only when the
controller is not on this machine; a ``sshserver`` passed by the user always wins.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

from ipcluster.error import ConnectionFileError
from ipcluster.profiles.connection import read_connection_file, url_for, validate_connection_info
from ipcluster.profiles.dirs import ProfileDir

CHANNELS = ("registration", "mux", "task", "control", "iopub", "notification")


@lru_cache(maxsize=1)
def local_ips() -> frozenset[str]:
    """Addresses that mean 'this machine'."""
    ips = {"127.0.0.1", "::1", "localhost", "0.0.0.0", "*", ""}
    for name in {socket.gethostname(), socket.getfqdn(), "localhost"}:
        ips.add(name)
        try:
            ips.update(socket.gethostbyname_ex(name)[2])
        except OSError:
            pass
        try:
            ips.update(info[4][0] for info in socket.getaddrinfo(name, None))
        except OSError:
            pass
    return frozenset(ips)


def is_local(host: str | None) -> bool:
    return not host or host.startswith("127.") or host in local_ips()


def find_connection_file(
    url_file: Any,
    profile: str | None,
    profile_dir: str | os.PathLike[str] | None,
    ipython_dir: str | os.PathLike[str] | None,
    cluster_id: str | None,
) -> Path:
    """The client connection file to read: an explicit path (relative ones also tried in the profile's
    security dir), or the profile's ``ipcontroller[-<cluster_id>]-client.json``."""
    if ipython_dir and not profile_dir:
        prof = ProfileDir.for_name(profile or "default", base=Path(ipython_dir))
        prof.ensure()
    else:
        prof = ProfileDir.find(profile, profile_dir)
    if url_file:
        path = Path(url_file).expanduser()
        if not path.is_absolute() and not path.exists() and (prof.security_dir / path).exists():
            path = prof.security_dir / path
        return path
    return prof.connection_file("client", cluster_id or "")


def load_connection_info(
    url_file: Any, profile: Any, profile_dir: Any, ipython_dir: Any, cluster_id: Any, timeout: float
) -> tuple[dict[str, Any], str]:
    """(validated connection info, where it came from); waits up to ``timeout`` s for the file to appear."""
    if isinstance(url_file, dict):
        return validate_connection_info(dict(url_file), "the connection dict"), "the connection dict"
    if isinstance(url_file, str) and "://" in url_file:
        path = _file_for_url(url_file, profile, profile_dir)
        if path is None:
            raise ConnectionFileError(
                f"Client({url_file!r}): a bare url does not carry the key and ports, and no connection file "
                "on this machine names that controller; pass the connection file "
                "(security/ipcontroller-client.json) or its dict instead"
            )
        return read_connection_file(path), str(path)
    path = find_connection_file(url_file, profile, profile_dir, ipython_dir, cluster_id)
    deadline = time.monotonic() + max(0.0, timeout)
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return read_connection_file(path), str(path)


def _file_for_url(url: str, profile: Any, profile_dir: Any) -> Path | None:
    """The client connection file of a controller registering at ``url`` (the seed's ``Client(url)``): the
    key and ports are in that file, so a bare url works on any machine that has it, in the chosen profile
    or, when none is named, in any profile."""
    from ipcluster.profiles.dirs import list_profiles

    if profile or profile_dir:
        profiles = [ProfileDir.find(profile, profile_dir)]
    else:
        profiles = list_profiles()
    for prof in profiles:
        for path in sorted(prof.security_dir.glob("ipcontroller*-client.json")):
            try:
                info = read_connection_file(path)
            except (ConnectionFileError, OSError, ValueError):
                continue
            if url in (info.get("url"), url_for(info, "registration")):
                return path
    return None


def channel_urls(info: dict[str, Any]) -> dict[str, str]:
    missing = [c for c in CHANNELS if info.get(c) is None]
    if missing:
        raise ConnectionFileError(
            f"the connection info lacks the {', '.join(missing)} port(s): is this the engine file? "
            "Pass ipcontroller-client.json"
        )
    return {c: url_for(info, c) for c in CHANNELS}


def choose_ssh_server(info: dict[str, Any], sshserver: str | None, sshkey: str | None) -> str | None:
    """Which SSH server (if any) to tunnel through, following the location rule."""
    if sshserver:
        return sshserver
    location = str(info.get("location") or "")
    controller_is_local = is_local(location)
    file_ssh = str(info.get("ssh") or "")
    if file_ssh and not controller_is_local:
        return file_ssh
    iface = str(info.get("interface") or "")
    if not controller_is_local and iface.startswith("127.") and not file_ssh:
        warnings.warn(
            f"the controller listens on {iface} but runs on {location}, not on this machine: pass "
            f"Client(..., sshserver='you@{location}') or start the controller with --ip set to an external "
            "address",
            RuntimeWarning,
            stacklevel=3,
        )
    if sshkey:
        return str(info.get("location") or iface) or None
    return None


def tunnel_urls(
    urls: dict[str, str], server: str, sshkey: str | None, password: str | None, options: dict[str, Any]
) -> dict[str, str]:
    """Every url forwarded through ``server`` over one SSH connection (ipcluster.tunnel does the SSH).

    ``options`` go to the tunnel's SSHConnection (known_hosts, ssh_config, host_key_policy, ...)."""
    try:
        from ipcluster.tunnel import tunnel_url
    except ImportError as exc:
        raise ImportError(f"connecting through SSH needs ipcluster.tunnel.tunnel_url: {exc}") from exc
    out = {}
    for name, url in urls.items():
        out[name] = tunnel_url(url, server, keyfile=sshkey, password=password, **options)
    return out
