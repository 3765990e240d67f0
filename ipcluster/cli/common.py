"""What every ipcluster subcommand shares: exit codes, error translation, the profile and config options."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click

from ipcluster.error import ConfigError, IPClusterError
from ipcluster.profiles.config import SECTIONS, Config, field_spec, parse_text
from ipcluster.profiles.dirs import ProfileDir
from ipcluster.profiles.manage import open_profile, profile_config

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # bad option, bad config file or value
EXIT_ALREADY_RUNNING = 3
EXIT_NOT_RUNNING = 4

EXIT_CODES_HELP = (
    "\b\nExit codes:\n"
    "  0  success\n"
    "  1  error (the controller failed, engines did not register, ...)\n"
    "  2  bad usage or bad configuration\n"
    "  3  the cluster is already running\n"
    "  4  no such cluster is running"
)


class Failure(click.ClickException):
    """A one-line error with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def translate_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ipcluster exceptions into a one-line ``Error: ...`` and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            raise Failure(str(exc), EXIT_USAGE)
        except IPClusterError as exc:
            raise Failure(str(exc), getattr(exc, "exit_code", EXIT_ERROR))

    return wrapper


def profile_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--profile-dir", type=click.Path(file_okay=False), default=None,
        help="Use this profile directory instead of <IPCLUSTER_DIR>/profile_<name>.",
    )(fn)  # fmt: skip
    fn = click.option("--profile", default=None, help="Profile name [default: default].")(fn)
    return fn


def config_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-c", "--config", "settings", multiple=True, metavar="SECTION.KEY=VALUE",
        help="Set any config key for this run, e.g. -c controller.ping=500 -c launcher.mpi.args='[\"-x\"]'.",
    )(fn)  # fmt: skip


def parse_settings(settings: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """``section.key=value`` strings (the value in environment-variable syntax) into overrides."""
    out: dict[str, dict[str, Any]] = {}
    for item in settings:
        name, sep, raw = item.partition("=")
        section, _, key = name.rpartition(".")
        if not sep or not section:
            raise Failure(f"-c {item!r}: expected SECTION.KEY=VALUE, e.g. -c cluster.n=4", EXIT_USAGE)
        source = f"-c {item}"
        if section not in SECTIONS or key not in {f.name for f in fields(SECTIONS[section])}:
            Config().set(section, key, None, source)  # raises the unknown section / key error, with a hint
        spec = field_spec(section, key)
        out.setdefault(section, {})[key] = parse_text(spec, raw, source)
    return out


def merge(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            out.setdefault(section, {}).update({k: v for k, v in values.items() if v is not None})
    return out


def load(
    profile: str | None, profile_dir: str | None, overrides: dict[str, dict[str, Any]]
) -> tuple[ProfileDir, Config]:
    prof = open_profile(profile, profile_dir)
    return prof, profile_config(prof, overrides)


def format_uptime(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"
