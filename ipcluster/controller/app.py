"""``ipcontroller``: the command line of the controller process (docs/protocol.md §10, docs/controller.md).

Exit status: 0 after a clean shutdown, 1 when it cannot start (a port in use, a bad profile), 2 on a bad
option (click's usage error).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import click

from ipcluster.error import IPClusterError
from ipcluster.profiles import ProfileDir
from ipcluster.wire import SCHEMES as SIGNATURE_SCHEMES
from ipcluster.wire import blake3_available

from .config import DB_BACKENDS, SCHEMES, ControllerConfig
from .ports import parse_port_range

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _port_range(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        return parse_port_range(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command(
    "ipcontroller",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
    epilog="Exit status: 0 after shutdown, 1 if it cannot start (e.g. a port in use), 2 on a bad option.",
)
@click.option("--profile", default=None, metavar="NAME", help="Profile name (default: 'default').")
@click.option(
    "--profile-dir", type=click.Path(file_okay=False, path_type=Path), default=None, help="Profile directory."
)
@click.option("--cluster-id", default="", metavar="ID", help="Cluster id: names the connection files.")
@click.option("--ip", default="127.0.0.1", show_default=True, help="Interface to bind; 0.0.0.0 for all.")
@click.option(
    "--transport", type=click.Choice(["tcp", "ipc"]), default="tcp", show_default=True, help="zmq transport."
)
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Registration port (default: random).")
@click.option(
    "--ports", "port_range", callback=_port_range, metavar="LO-HI", help="Take every port from this range."
)
@click.option(
    "--location", default="", help="Address peers connect to when bound to 0.0.0.0 (default: this host's IP)."
)
@click.option(
    "--ssh", default="", metavar="[USER@]HOST[:PORT]", help="SSH server clients should tunnel through."
)
@click.option(
    "--enginessh", default="", metavar="[USER@]HOST[:PORT]", help="SSH server engines should tunnel through."
)
@click.option(
    "--ping",
    "hb_period",
    type=click.IntRange(10, None),
    default=1000,
    show_default=True,
    help="Heartbeat period in ms.",
)
@click.option(
    "--hb-misses",
    type=click.IntRange(1, None),
    default=3,
    show_default=True,
    help="Missed beats before an engine fails.",
)
@click.option(
    "--disconnect-grace",
    type=click.IntRange(0, None),
    default=0,
    show_default=True,
    metavar="MS",
    help="When an engine's heartbeat connection closes, fail it unless it pongs again within MS ms.",
)
@click.option(
    "--scheme",
    type=click.Choice(SCHEMES),
    default="leastload",
    show_default=True,
    help="Task scheduler scheme.",
)
@click.option(
    "--hwm",
    type=click.IntRange(0, None),
    default=0,
    show_default=True,
    help="Max tasks in flight per engine (0 = no cap).",
)
@click.option(
    "--reuse",
    is_flag=True,
    help="Reuse the key and ports of existing connection files, and keep the files on exit.",
)
@click.option(
    "--secure/--no-secure",
    default=True,
    show_default=True,
    help="Sign messages (--no-secure: unsigned, trusted networks only).",
)
@click.option(
    "--signature-scheme",
    type=click.Choice([s for s in SIGNATURE_SCHEMES if s != "none"]),
    default="hmac-sha256",
    show_default=True,
    help="Keyed hash that signs messages; blake3 is faster on large buffers.",
)
@click.option(
    "--db", type=click.Choice(DB_BACKENDS), default="dict", show_default=True, help="Task record store."
)
@click.option("--dictdb", "db", flag_value="dict", help="Same as --db dict.")
@click.option("--sqlitedb", "db", flag_value="sqlite", help="Same as --db sqlite.")
@click.option(
    "--db-path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="SQLite file (default: <profile>/log/tasks.db).",
)
@click.option(
    "--task-retention",
    type=click.IntRange(1, None),
    default=100_000,
    show_default=True,
    help="Completed task records kept in memory (oldest dropped first).",
)
@click.option(
    "--task-retention-bytes",
    type=click.IntRange(0, None),
    default=256 * 2**20,
    show_default=True,
    help="Bytes of request and result buffers kept in memory, for resubmit and result_request "
    "(oldest dropped first, requests before results).",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log level.",
)
def command(**options: object) -> None:
    """Start the ipcluster controller: the hub, the schedulers and the heart monitor.

    Writes security/ipcontroller-client.json and ipcontroller-engine.json in the profile, then serves
    until a client asks it to shut down, or SIGTERM/SIGINT.
    """
    config = build_config(**options)  # type: ignore[arg-type]
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s.%(msecs)03d [ipcontroller] %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    from .controller import run

    try:
        run(config)
    except IPClusterError as exc:
        raise click.ClickException(str(exc)) from None


def build_config(
    profile: str | None,
    profile_dir: Path | None,
    log_level: str,
    signature_scheme: str,
    **options: object,
) -> ControllerConfig:
    """Validate options into a ControllerConfig; user errors become one-line click errors."""
    if signature_scheme == "blake3" and not blake3_available():
        raise click.BadParameter(
            "blake3 needs the blake3 package: pip install blake3", param_hint="--signature-scheme"
        )
    try:
        prof = ProfileDir.find(profile, profile_dir, create=True)
    except IPClusterError as exc:
        raise click.ClickException(str(exc)) from None
    return ControllerConfig(
        profile_dir=prof.path,
        log_level=log_level.upper(),
        signature_scheme=signature_scheme,
        **options,  # type: ignore[arg-type]
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point (``ipcontroller``)."""
    command.main(args=list(argv) if argv is not None else None, prog_name="ipcontroller")
