"""The ipcluster.toml schema: one dataclass per section, every default and meaning in one place.

Layers, lowest first: the defaults here < the profile's ``ipcluster.toml`` < ``IPCLUSTER_<SECTION>_<KEY>``
environment variables < the command line. Every value is checked once, at the layer it came from, so an
error names its source: the file, the variable, or the option.
"""

from __future__ import annotations

import difflib
import os
import shlex
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from ipcluster.error import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENV_PREFIX = "IPCLUSTER_"
SCHEMES = ("leastload", "lru", "plainrandom", "twobin", "weighted")
SIGNATURE_SCHEMES = ("hmac-sha256", "blake3", "none")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def opt(
    default: Any,
    help: str,  # noqa: A002 - reads naturally at every call site
    *,
    choices: tuple[str, ...] | None = None,
    minimum: float | None = None,
    example: str | None = None,
) -> Any:
    """A config option: its default, a one-line meaning, and what values are allowed."""
    meta = {"help": help, "choices": choices, "minimum": minimum, "example": example}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ClusterConfig:
    n: int | None = opt(None, "how many engines to start; unset means one per CPU", minimum=0, example="4")
    launcher: str = opt(
        "local", "how engines are started: local, mpi, ssh, slurm, sge, pbs, lsf, htcondor, winhpc"
    )
    controller_launcher: str = opt("local", "how the controller is started (same names as launcher)")
    cluster_id: str = opt("", "name of this cluster inside the profile, so several can run side by side")
    controller_timeout: float = opt(
        30.0, "seconds to wait for the controller to write its connection files", minimum=0
    )
    engine_timeout: float = opt(
        120.0, "seconds to wait for all engines to register; 0 waits forever", minimum=0
    )
    stop_timeout: float = opt(
        5.0, "seconds between asking processes to stop (SIGTERM) and killing them", minimum=0
    )


@dataclass
class ControllerConfig:
    ip: str = opt("127.0.0.1", "address the controller binds; 0.0.0.0 to accept engines from other hosts")
    location: str = opt("", "address peers connect to when ip is a wildcard (empty: this host's address)")
    transport: str = opt("tcp", "zmq transport", choices=("tcp", "ipc"))
    port: int = opt(0, "registration port; 0 picks a free one", minimum=0)
    ports: str = opt("", "take every port from this range, LO-HI (for firewalls)", example='"50000-50100"')
    ping: int = opt(1000, "milliseconds between heartbeats", minimum=1)
    hb_misses: int = opt(3, "missed heartbeats before an engine is declared dead", minimum=1)
    scheme: str = opt("leastload", "load-balancing scheme", choices=SCHEMES)
    hwm: int = opt(0, "max load-balanced tasks in flight per engine; 0 = unlimited", minimum=0)
    signature_scheme: str = opt("hmac-sha256", "message signature", choices=SIGNATURE_SCHEMES)
    secure: bool = opt(True, "sign messages with the key in the connection files")
    reuse: bool = opt(False, "reuse the ports and key of existing connection files")
    db: str = opt("dict", "task record store", choices=("dict", "sqlite"))
    ssh: str = opt("", "SSH server clients reach the controller through (user@host)")
    enginessh: str = opt("", "SSH server engines reach the controller through (user@host)")
    log_level: str = opt("INFO", "controller log level", choices=LOG_LEVELS)
    extra_args: list[str] = opt([], "more ipcontroller command-line arguments", example='["--hwm", "1"]')


@dataclass
class EngineConfig:
    timeout: float = opt(
        10.0, "seconds an engine waits for the controller to accept its registration", minimum=0
    )
    hb_grace: int = opt(
        0,
        "extra milliseconds an engine waits for a heartbeat before deciding the controller is gone",
        minimum=0,
    )
    log_level: str = opt("INFO", "engine log level", choices=LOG_LEVELS)
    extra_args: list[str] = opt(
        [], "more ipengine command-line arguments", example='["--log-level", "DEBUG"]'
    )


@dataclass
class LocalLauncherConfig:
    env: dict[str, str] = opt(
        {}, "extra environment variables for the processes", example='{OMP_NUM_THREADS = "1"}'
    )


@dataclass
class SSHLauncherConfig:
    engines: dict[str, int] = opt({}, "engines per host", example='{"node1" = 4, "user@node2" = 2}')
    python: str = opt("python3", "Python interpreter on the remote hosts (with ipcluster installed)")
    env_setup: str = opt("", "shell lines run before each remote command (module load, conda activate ...)")
    controller_host: str = opt("", "host to run the controller on with controller_launcher = ssh")
    remote_profile_dir: str = opt("", "profile directory on the remote hosts; default: same path as here")
    host_python: dict[str, str] = opt(
        {}, "per-host Python, overriding python", example='{"node2" = "/opt/py311/bin/python"}'
    )
    host_env_setup: dict[str, str] = opt(
        {}, "per-host env_setup, overriding env_setup", example='{"node2" = "module load python/3.11"}'
    )
    sshkey: str = opt("", "private key file for the SSH connections (default: ssh_config, agent, ~/.ssh)")
    ssh_accept_new: bool = opt(
        False, "record unknown host keys in known_hosts (a changed key is still refused)"
    )
    known_hosts: str = opt("", "known_hosts file to check host keys against (default: ~/.ssh/known_hosts)")
    ssh_config: str = opt("", "ssh_config file to read (default: ~/.ssh/config)")


@dataclass
class MPILauncherConfig:
    mpiexec: str = opt("mpiexec", "the MPI launcher command")
    args: list[str] = opt([], "more mpiexec arguments", example='["--oversubscribe"]')
    env_setup: str = opt("", "shell lines run before mpiexec (module load ...)")


@dataclass
class BatchLauncherConfig:
    """What every batch system asks for; a scheduler's section may add its own keys."""

    queue: str = opt("", "queue (Slurm: partition) to submit to")
    account: str = opt("", "account or project to charge")
    walltime: str = opt("01:00:00", "job time limit, HH:MM:SS")
    memory: str = opt("", "memory per job, e.g. 4G")
    cores_per_engine: int = opt(1, "CPU cores reserved for each engine", minimum=1)
    engines_per_job: int = opt(0, "engines in one job; 0 puts all of them in one job", minimum=0)
    job_name: str = opt("ipcluster", "job name shown by the scheduler")
    env_setup: str = opt("", "shell lines at the top of the job script (module load, conda activate ...)")
    extra_directives: list[str] = opt([], "more scheduler directives, one per entry, without the prefix")
    submit_args: list[str] = opt([], "more arguments for the submit command")


@dataclass
class SGELauncherConfig(BatchLauncherConfig):
    pe: str = opt("", "parallel environment for multi-engine jobs (-pe NAME N)")


@dataclass
class WinHPCLauncherConfig(BatchLauncherConfig):
    scheduler: str = opt("", "head node of the Windows HPC cluster")


SECTIONS: dict[str, type] = {
    "cluster": ClusterConfig,
    "controller": ControllerConfig,
    "engine": EngineConfig,
    "launcher.local": LocalLauncherConfig,
    "launcher.ssh": SSHLauncherConfig,
    "launcher.mpi": MPILauncherConfig,
    "launcher.slurm": BatchLauncherConfig,
    "launcher.sge": SGELauncherConfig,
    "launcher.pbs": BatchLauncherConfig,
    "launcher.lsf": BatchLauncherConfig,
    "launcher.htcondor": BatchLauncherConfig,
    "launcher.winhpc": WinHPCLauncherConfig,
}

# Resolved annotations of every field (the module uses postponed annotations), keyed by the Field object.
_HINTS = {id(f): typing.get_type_hints(cls)[f.name] for cls in SECTIONS.values() for f in fields(cls)}


@dataclass
class Config:
    """Every section, validated. ``config.section("launcher.ssh")`` reaches any section by name."""

    sections: dict[str, Any] = field(default_factory=lambda: {name: cls() for name, cls in SECTIONS.items()})

    @property
    def cluster(self) -> ClusterConfig:
        return self.sections["cluster"]

    @property
    def controller(self) -> ControllerConfig:
        return self.sections["controller"]

    @property
    def engine(self) -> EngineConfig:
        return self.sections["engine"]

    def section(self, name: str) -> Any:
        return self.sections[name]

    def launcher(self, name: str) -> Any:
        """The ``[launcher.<name>]`` section, or None for a plugin launcher without one."""
        return self.sections.get(f"launcher.{name}")

    def set(self, section: str, key: str, value: Any, source: str = "command line") -> None:
        """Validate one value and store it; ConfigError names the source, key and what is allowed."""
        obj = _section(self, section, source)
        spec = _field(obj, section, key, source)
        setattr(obj, key, check_value(section, key, spec, value, source))

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {
            name: {f.name: getattr(obj, f.name) for f in fields(obj)} for name, obj in self.sections.items()
        }


def load_config(
    config_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Build a Config: defaults, then the TOML file (if it exists), then the environment, then overrides."""
    config = Config()
    if config_file is not None and Path(config_file).is_file():
        apply_file(config, Path(config_file))
    apply_env(config, os.environ if env is None else env)
    for section, values in (overrides or {}).items():
        for key, value in values.items():
            if value is not None:
                config.set(section, key, value)
    return config


def apply_file(config: Config, path: Path) -> None:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: not valid TOML ({exc}); fix the file or recreate it with ipcluster profile create --force"
        )
    for top, value in data.items():
        if top == "launcher" and isinstance(value, dict):
            for name, table in value.items():
                _apply_table(config, f"launcher.{name}", table, path)
        else:
            _apply_table(config, top, value, path)


def _apply_table(config: Config, section: str, table: Any, path: Path) -> None:
    source = str(path)
    _section(config, section, source)
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [{section}] must be a table, not {type(table).__name__}")
    for key, value in table.items():
        config.set(section, key, value, source)


def apply_env(config: Config, env: Mapping[str, str]) -> None:
    """``IPCLUSTER_CONTROLLER_IP=0.0.0.0``, ``IPCLUSTER_LAUNCHER_SSH_PYTHON=python3.11`` ...

    Variables whose name starts with no known section (``IPCLUSTER_DIR``) are not config and are ignored.
    """
    by_prefix = sorted(((s.replace(".", "_").upper() + "_", s) for s in SECTIONS), key=lambda p: -len(p[0]))
    for var, raw in env.items():
        if not var.startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX) :]
        for prefix, section in by_prefix:
            if rest.startswith(prefix):
                key = rest[len(prefix) :].lower()
                spec = _field(config.section(section), section, key, f"environment variable {var}")
                config.set(
                    section,
                    key,
                    parse_text(spec, raw, f"environment variable {var}"),
                    f"environment variable {var}",
                )
                break


def parse_text(spec: Any, raw: str, source: str) -> Any:
    """Turn a string (environment, command line) into the field's type; lists and tables use TOML syntax."""
    kind = _base_type(spec)
    try:
        if kind is bool:
            low = raw.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return None if raw.strip() == "" and _optional(spec) else int(raw)
        if kind is float:
            return float(raw)
        if kind is list:
            if raw.lstrip().startswith("["):
                return tomllib.loads(f"v = {raw}")["v"]
            return shlex.split(raw)
        if kind is dict:
            return tomllib.loads(f"v = {raw}")["v"]
    except (ValueError, tomllib.TOMLDecodeError):
        raise ConfigError(f"{source}: {raw!r} is not {_type_name(spec)}")
    return raw


def check_value(section: str, key: str, spec: Any, value: Any, source: str) -> Any:
    meta = spec.metadata
    where = f"{source}: [{section}] {key}"
    kind = _base_type(spec)
    if value is None and _optional(spec):
        return None
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if ok and kind is list:
        ok = all(isinstance(v, str) for v in value)
    if ok and kind is dict:
        item = typing.get_args(_hint(spec))[1]
        ok = all(isinstance(v, item) and not isinstance(v, bool) for v in value.values())
    if not ok:
        raise ConfigError(f"{where} = {value!r}: expected {_type_name(spec)}")
    if meta.get("choices") and value not in meta["choices"]:
        hint = _did_you_mean(str(value), meta["choices"])
        raise ConfigError(f"{where} = {value!r}: allowed values are {', '.join(meta['choices'])}{hint}")
    minimum = meta.get("minimum")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where} = {value!r}: must be at least {minimum}")
    if kind is dict and key == "engines" and any(v < 1 for v in value.values()):
        raise ConfigError(f"{where}: every host needs at least 1 engine")
    if key == "ports" and value and not _is_port_range(value):
        raise ConfigError(f'{where} = {value!r}: expected LO-HI, e.g. "50000-50100"')
    return value


def field_spec(section: str, key: str) -> Any:
    """The dataclass field of ``[section] key`` (for the CLI and the docs)."""
    return {f.name: f for f in fields(SECTIONS[section])}[key]


def default_of(spec: Any) -> Any:
    if spec.default is not MISSING:
        return spec.default
    return spec.default_factory()


def _section(config: Config, section: str, source: str) -> Any:
    if section not in config.sections:
        hint = _did_you_mean(section, list(SECTIONS))
        raise ConfigError(f"{source}: unknown section [{section}]{hint}; sections are {', '.join(SECTIONS)}")
    return config.sections[section]


def _field(obj: Any, section: str, key: str, source: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    if key not in known:
        hint = _did_you_mean(key, list(known))
        raise ConfigError(
            f"{source}: unknown key {key!r} in [{section}]{hint}; known keys: {', '.join(known)}"
        )
    return known[key]


def _did_you_mean(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _hint(spec: Any) -> Any:
    return _HINTS[id(spec)]


def _optional(spec: Any) -> bool:
    hint = _hint(spec)
    return isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)


def _base_type(spec: Any) -> type:
    hint = _hint(spec)
    if isinstance(hint, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return typing.get_origin(hint) or hint


def _type_name(spec: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    kind = _base_type(spec)
    if kind is list:
        return "a list of strings"
    if kind is dict:
        item = typing.get_args(_hint(spec))[1]
        return f"a table of {'integers' if item is int else 'strings'}"
    name = names.get(kind, kind.__name__)
    return f"{name} (or unset)" if _optional(spec) else name


def _is_port_range(text: str) -> bool:
    lo, sep, hi = text.partition("-")
    return bool(sep) and lo.isdigit() and hi.isdigit() and 0 < int(lo) <= int(hi) < 65536
