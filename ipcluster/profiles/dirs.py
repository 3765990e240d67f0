"""Where profiles live: ``<base>/profile_<name>/`` with ``security/`` (0700), ``log/`` and the config file.

The base directory is the platformdirs user data dir, overridden by ``IPCLUSTER_DIR``; a single profile
directory can be named directly with ``--profile-dir``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs

from ipcluster.error import ProfileError

DEFAULT_PROFILE = "default"
CONFIG_FILENAME = "ipcluster.toml"
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def base_dir() -> Path:
    """The directory holding every ``profile_<name>`` directory."""
    env = os.environ.get("IPCLUSTER_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return Path(platformdirs.user_data_dir("ipcluster", appauthor=False))


def validate_profile_name(name: str) -> str:
    if not _VALID_NAME.match(name or ""):
        raise ProfileError(
            f"invalid profile name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return name


class ProfileDir:
    """One profile directory and the well-known paths inside it."""

    def __init__(self, path: Path | str, name: str | None = None) -> None:
        self.path = Path(path).expanduser().resolve()
        self.name = name or _name_from_path(self.path)

    def __repr__(self) -> str:
        return f"ProfileDir({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProfileDir) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def security_dir(self) -> Path:
        return self.path / "security"

    @property
    def log_dir(self) -> Path:
        return self.path / "log"

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILENAME

    @property
    def clusters_dir(self) -> Path:
        """Where the cluster registry keeps one file per running cluster."""
        return self.path / "clusters"

    def connection_file(self, role: str, cluster_id: str = "") -> Path:
        """``security/ipcontroller[-<cluster_id>]-<role>.json`` for role ``client`` or ``engine``."""
        if role not in ("client", "engine"):
            raise ValueError(f"role must be 'client' or 'engine', not {role!r}")
        stem = f"ipcontroller-{cluster_id}-{role}" if cluster_id else f"ipcontroller-{role}"
        return self.security_dir / f"{stem}.json"

    def exists(self) -> bool:
        return self.path.is_dir()

    def ensure(self) -> ProfileDir:
        """Create the directory tree with safe permissions (security/ is 0700)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        self.clusters_dir.mkdir(exist_ok=True)
        self.security_dir.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.security_dir, 0o700)
        return self

    @classmethod
    def for_name(cls, name: str = DEFAULT_PROFILE, base: Path | None = None) -> ProfileDir:
        validate_profile_name(name)
        return cls((base or base_dir()) / f"profile_{name}", name)

    @classmethod
    def find(
        cls,
        name: str | None = None,
        profile_dir: str | os.PathLike[str] | None = None,
        create: bool = False,
    ) -> ProfileDir:
        """The profile named ``name`` (default ``default``) or at ``profile_dir``.

        With ``create`` the directory is made if missing; otherwise a missing profile other than ``default``
        raises ProfileError listing the profiles that exist. The default profile is created on first use.
        """
        if profile_dir:
            prof = cls(profile_dir)
        else:
            prof = cls.for_name(name or DEFAULT_PROFILE)
        if prof.exists():
            return prof.ensure()
        if create or (not profile_dir and (name or DEFAULT_PROFILE) == DEFAULT_PROFILE):
            return prof.ensure()
        known = ", ".join(p.name for p in list_profiles()) or "none"
        where = profile_dir or f"{prof.path}"
        raise ProfileError(
            f"no profile {name or where!r} at {where}; known profiles: {known}. "
            f"Create it with: ipcluster profile create {name or '<name>'}"
        )


def list_profiles(base: Path | None = None) -> list[ProfileDir]:
    root = base or base_dir()
    if not root.is_dir():
        return []
    found = []
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name.startswith("profile_"):
            found.append(ProfileDir(child, child.name[len("profile_") :]))
    return found


def _name_from_path(path: Path) -> str:
    return path.name[len("profile_") :] if path.name.startswith("profile_") else path.name
