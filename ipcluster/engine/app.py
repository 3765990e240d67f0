"""``ipengine``: read the engine connection file, register with the controller, serve until told to stop.

Exit statuses (also in ``--help``): 0 after shutdown_request or SIGTERM, 1 on an unexpected error, 2 for a
missing or bad connection file, 3 when the controller stops sending heartbeats, 4 when registration
times out or is refused.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import zmq

from ipcluster import wire
from ipcluster.error import ConnectionFileError, IPClusterError, ProfileError
from ipcluster.profiles.connection import read_connection_file, url_for
from ipcluster.profiles.dirs import ProfileDir

from .engine import Engine, EngineUrls, _Terminate
from .registration import RegistrationFailed, open_registration_socket, register

log = logging.getLogger("ipcluster.engine")

EXIT_BAD_CONNECTION_FILE = 2
ENGINE_CHANNELS = ("registration", "mux", "task", "control", "iopub", "hb_ping", "hb_pong")

EPILOG = """\b
Exit status:
  0  shut down by the controller (shutdown_request) or by SIGTERM
  2  the connection file is missing or invalid
  3  the controller stopped sending heartbeats (it is gone)
  4  registration timed out, was refused, or the key does not match

\b
Examples:
  ipengine                              # default profile's ipcontroller-engine.json
  ipengine --profile mpi --cluster-id 42
  ipengine --file ./ipcontroller-engine.json --ssh user@gateway
"""


class EngineExit(Exception):
    """A failure the user fixes: printed as one line, then the process exits with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def find_connection_file(
    file: str | None, profile: str | None, profile_dir: str | None, cluster_id: str
) -> Path:
    if file:
        return Path(file).expanduser()
    try:
        prof = ProfileDir.find(profile, profile_dir)
    except ProfileError as exc:
        raise EngineExit(str(exc), EXIT_BAD_CONNECTION_FILE) from exc
    return prof.connection_file("engine", cluster_id)


def load_engine_info(path: Path, location: str | None) -> dict[str, Any]:
    """The connection info with every engine channel present; --location replaces the controller host."""
    try:
        info = read_connection_file(path)
    except ConnectionFileError as exc:
        raise EngineExit(str(exc), EXIT_BAD_CONNECTION_FILE) from exc
    missing = [c for c in ENGINE_CHANNELS if c not in info]
    if missing:
        raise EngineExit(
            f"connection file {path} lacks {', '.join(missing)}; engines need ipcontroller-engine.json, "
            "not the client file",
            EXIT_BAD_CONNECTION_FILE,
        )
    try:
        wire.make_signer(info["key"], info["signature_scheme"])
    except ValueError as exc:
        raise EngineExit(f"connection file {path}: {exc}", EXIT_BAD_CONNECTION_FILE) from exc
    if location:
        info = {**info, "interface": location, "location": location}
    return info


def tunnelled_urls(
    info: dict[str, Any], ssh: str | None, sshkey: str | None, host_key_policy: str = "strict"
) -> tuple[dict[str, str], str | None]:
    """The url of each engine channel, forwarded through SSH when a server is given.

    Every connection goes through the tunnel, heartbeat included, so a controller behind a single SSH
    server is reachable from anywhere.
    """
    urls = {c: url_for(info, c) for c in ENGINE_CHANNELS}
    server = ssh or info.get("ssh") or ""
    if not server and sshkey:
        server = urlsplit(urls["registration"]).hostname or ""
    if not server:
        return urls, None
    try:
        from ipcluster.tunnel import tunnel_url
    except ImportError as exc:
        raise EngineExit(
            f"--ssh {server}: SSH tunnelling is not available yet in this ipcluster ({exc}); "
            "run the engine where it can reach the controller directly",
            1,
        ) from exc
    try:
        tunnelled = {
            c: tunnel_url(u, server, keyfile=sshkey, host_key_policy=host_key_policy) for c, u in urls.items()
        }
        log.info("tunnelling every engine connection through %s", server)
        return tunnelled, server
    except IPClusterError as exc:
        raise EngineExit(f"cannot tunnel to the controller through {server}: {exc}", 1) from exc


def configure_logging(level: str, log_file: str | None) -> None:
    """The engine logs to stderr (or a file); user output goes to iopub instead."""
    handler: logging.Handler
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(logging.Formatter("%(asctime)s [ipengine] %(levelname)s %(message)s"))
    root = logging.getLogger("ipcluster")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def run_engine(
    connection_file: Path,
    timeout: float = 10.0,
    ssh: str | None = None,
    sshkey: str | None = None,
    location: str | None = None,
    hb_grace: float = 0.0,
    host_key_policy: str = "strict",
) -> int:
    """Register and serve; returns the exit status (raises EngineExit for the user-fixable failures)."""
    info = load_engine_info(connection_file, location)
    controller_url = url_for(info, "registration")
    urls, _server = tunnelled_urls(info, ssh, sshkey, host_key_policy)
    engine_uuid = _new_uuid()
    session = wire.Session(info["key"], info["signature_scheme"], session=engine_uuid)
    context = zmq.Context()
    reg = open_registration_socket(context, urls["registration"], engine_uuid.encode("ascii"))
    try:
        reply = register(session, reg, controller_url, engine_uuid, timeout, str(connection_file))
    except RegistrationFailed as exc:
        reg.close(0)
        context.term()
        raise EngineExit(str(exc), exc.exit_code) from exc
    except _Terminate:
        reg.close(0)
        context.term()
        return 0
    engine_id = reply["id"]
    hb_period = float(reply.get("hb_period") or info.get("hb_period") or 1000)
    hb_misses = int(reply.get("hb_misses") or info.get("hb_misses") or 3)
    log.info(
        "registered with the controller at %s as engine %d (uuid %s)", controller_url, engine_id, engine_uuid
    )
    engine = Engine(
        context,
        session,
        EngineUrls(**urls),
        reg,
        engine_id,
        engine_uuid,
        hb_misses * hb_period + hb_grace,
        controller_url,
        hb_period,
        hb_misses,
        first_nonce=_nonce(reply.get("hb_nonce")),
    )
    try:
        engine.connect()
    except _Terminate:
        engine.close()
        context.term()
        return 0
    except BaseException:
        engine.close()
        raise
    code = engine.serve()
    context.term()
    return code


def _nonce(value: object) -> bytes | None:
    """The ping nonce of a registration reply, for the heart's first pong (None if absent or malformed)."""
    try:
        return bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _new_uuid() -> str:
    import uuid

    return uuid.uuid4().hex


def _raise_terminate(signum: int, frame: Any) -> None:
    raise _Terminate()


@click.command(name="ipengine", epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--profile", default=None, help="Profile name whose connection file to use (default: default).")
@click.option(
    "--profile-dir", type=click.Path(file_okay=False), default=None, help="Profile directory to use."
)
@click.option("--cluster-id", default="", help="Cluster id: reads ipcontroller-<id>-engine.json.")
@click.option(
    "--file",
    "file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Path of the engine connection file.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the controller to answer registration.",
)
@click.option(
    "--ssh", default=None, help="SSH server ([user@]host[:port]) to tunnel every connection through."
)
@click.option("--sshkey", default=None, help="Private key file for --ssh.")
@click.option(
    "--ssh-accept-new",
    is_flag=True,
    help="Trust and record the SSH server's host key if known_hosts has none (a changed key is still refused).",
)
@click.option("--location", default=None, help="Address of the controller, overriding the connection file.")
@click.option(
    "--hb-grace",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Extra ms without pings before deciding the controller is gone.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Logging level.",
)
@click.option("--log-file", type=click.Path(dir_okay=False), default=None, help="Log here instead of stderr.")
def ipengine(
    profile: str | None,
    profile_dir: str | None,
    cluster_id: str,
    file: str | None,
    timeout: float,
    ssh: str | None,
    sshkey: str | None,
    ssh_accept_new: bool,
    location: str | None,
    hb_grace: float,
    log_level: str,
    log_file: str | None,
) -> None:
    """Start an engine: register with a running controller and run the tasks it sends."""
    configure_logging(log_level, log_file)
    signal.signal(signal.SIGTERM, _raise_terminate)
    try:
        path = find_connection_file(file, profile, profile_dir, cluster_id)
        policy = "accept-new" if ssh_accept_new else "strict"
        code = run_engine(path, timeout, ssh, sshkey, location, hb_grace, policy)
    except EngineExit as exc:
        click.echo(f"ipengine: error: {exc}", err=True)
        sys.exit(exc.code)
    except _Terminate:
        code = 0
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``ipengine`` and ``python -m ipcluster.engine``."""
    ipengine.main(args=argv, prog_name="ipengine")
