"""Creating and opening profiles: the directory tree plus a commented ``ipcluster.toml`` from a template."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ipcluster.error import ProfileError

from .config import Config, load_config
from .dirs import DEFAULT_PROFILE, ProfileDir, list_profiles, validate_profile_name
from .templates import TEMPLATES, render_config, template_for


def create_profile(
    name: str,
    template: str | None = None,
    force: bool = False,
    profile_dir: str | os.PathLike[str] | None = None,
) -> ProfileDir:
    """Create profile ``name`` with the template's config file.

    A profile named like a template (``mpi``, ``slurm`` ...) gets that template unless ``template`` says
    otherwise. An existing profile is refused unless ``force``, which rewrites only its config file.
    """
    validate_profile_name(name)
    chosen = template_for(name, template)
    if chosen not in TEMPLATES:
        raise ProfileError(f"unknown template {chosen!r}; templates: {', '.join(TEMPLATES)}")
    prof = ProfileDir(profile_dir, name) if profile_dir else ProfileDir.for_name(name)
    if prof.config_file.exists() and not force:
        raise ProfileError(
            f"profile {name!r} already exists at {prof.path}; pass --force to rewrite its ipcluster.toml"
        )
    prof.ensure()
    write_text_atomic(prof.config_file, render_config(name, chosen))
    return prof


def open_profile(name: str | None = None, profile_dir: str | os.PathLike[str] | None = None) -> ProfileDir:
    """The profile to use, created on first use for ``default`` and for an explicit ``--profile-dir``.

    Another missing profile is a ProfileError listing the known ones. A profile without a config file gets
    one, so the user always finds the options documented in place.
    """
    prof = ProfileDir.find(name, profile_dir, create=bool(profile_dir))
    if not prof.config_file.exists():
        write_text_atomic(prof.config_file, render_config(prof.name, template_for(prof.name, None)))
    return prof


def profile_config(
    prof: ProfileDir,
    overrides: dict[str, dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
) -> Config:
    """Load the profile's config with the environment and command-line overrides on top."""
    return load_config(prof.config_file, env=env, overrides=overrides)


def known_profiles() -> list[ProfileDir]:
    return list_profiles()


def locate_profile(name: str = DEFAULT_PROFILE) -> Path:
    prof = ProfileDir.find(name)
    return prof.path


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
