"""The ssh launcher: engines (and optionally the controller) on other hosts, started over SSH.

It reuses the tunnel layer's connection object (``ipcluster.tunnel.get_connection``), so a launcher and the
tunnels of this process share one SSH transport per host. For each host it

1. checks that the remote Python (after the host's environment setup) can import ipcluster,
2. copies the engine connection file over SFTP (mode 0600, written under a temporary name then renamed, so a
   shared home directory never sees a half-written or truncated file),
3. starts the engines detached (``nohup setsid python -m ipcluster.engine ... > log 2>&1 &``) and records
   their remote pids, with each process's start time so a reused pid is never signalled,
4. polls them, fetches their logs back into the local profile's ``log/``, and stops exactly them.

Every failure raises :class:`SSHLaunchError`, one line naming the host and the fix; nothing is left running.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ipcluster.error import ConfigError, IPClusterError
from ipcluster.tunnel import (
    SSHAuthError,
    SSHConnection,
    SSHError,
    SSHKeyFileError,
    UnknownHostKey,
    get_connection,
)

from .base import ControllerLauncher, EngineSetLauncher, Launcher, LauncherState

CHECK_TIMEOUT = 60.0  # seconds for one remote command (env setup + python start can be slow)
_MISSING = 127
_NO_IPCLUSTER = 96
_SETUP_FAILED = 95


class SSHLaunchError(IPClusterError):
    """Starting, watching or stopping processes over SSH failed; the message names the host and the fix."""

    exit_code = 1


@dataclass
class RemoteProcess:
    """One detached process on a remote host, identified by pid and (on Linux) its start time."""

    host: str
    pid: int
    log: str  # remote path
    index: int = 0
    start_time: str = ""
    group: bool = True  # started with setsid: its pid is also its process group

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "log": self.log, "index": self.index,
                "start_time": self.start_time, "group": self.group}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RemoteProcess:
        return cls(str(data["host"]), int(data["pid"]), str(data.get("log", "")), int(data.get("index", 0)),
                   str(data.get("start_time", "")), bool(data.get("group", True)))  # fmt: skip


# A POSIX sh function printing "<pid> <start time>" for every pid that is alive and not a zombie.
_ALIVE_FN = (
    'alive() { for p in "$@"; do '
    'if [ -r /proc/$p/stat ]; then s=$(sed "s/.*) //" /proc/$p/stat 2>/dev/null) || continue; '
    'set -- $s; case $1 in Z|X|"") ;; *) shift 19; echo "$p $1";; esac; set --; '
    'elif kill -0 $p 2>/dev/null; then echo "$p ?"; fi; done; }'
)


def parse_hosts(text: str) -> dict[str, int]:
    """``"node1=4,me@node2:2222=2,node3"`` → ``{"node1": 4, "me@node2:2222": 2, "node3": 1}`` (for --hosts)."""
    hosts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in re.split(r"[,\s]+", text))):
        host, sep, count = item.rpartition("=")
        if not sep:
            host, count = item, "1"
        if not host or not count.isdigit() or int(count) < 1:
            raise ConfigError(
                f"--hosts {item!r}: expected HOST=N with N >= 1, e.g. --hosts node1=4,me@node2:2222=2"
            )
        hosts[host] = hosts.get(host, 0) + int(count)
    return hosts


def _label(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", host)


class SSHLauncher(Launcher):
    """What the ssh engine and controller launchers share: connections, remote commands and processes."""

    name = "ssh"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.processes: list[RemoteProcess] = []
        self._homes: dict[str, str] = {}

    # -- configuration ----------------------------------------------------------------------------

    @property
    def section(self) -> Any:
        return self.ctx.config.launcher("ssh")

    def python(self, host: str) -> str:
        return self.section.host_python.get(host) or self.section.python

    def env_setup(self, host: str) -> str:
        return self.section.host_env_setup.get(host, self.section.env_setup)

    def connection(self, host: str) -> SSHConnection:
        """The shared SSH connection to ``host`` (opened on first use), with the profile's SSH options."""
        sec = self.section
        options: dict[str, Any] = {"host_key_policy": "accept-new" if sec.ssh_accept_new else None}
        if sec.sshkey:
            options["keyfile"] = str(Path(sec.sshkey).expanduser())
        if sec.known_hosts:
            options["known_hosts"] = str(Path(sec.known_hosts).expanduser())
        if sec.ssh_config:
            options["ssh_config"] = str(Path(sec.ssh_config).expanduser())
        try:
            return get_connection(host, **options)
        except SSHError as exc:
            raise SSHLaunchError(str(exc)) from exc

    def remote_home(self, host: str) -> str:
        if host not in self._homes:
            self._homes[host] = self.run(host, 'printf "%s" "$HOME"', setup=False).strip() or "."
        return self._homes[host]

    def remote_profile_dir(self, host: str) -> str:
        """Absolute profile directory on ``host``: [launcher.ssh] remote_profile_dir (relative to the remote
        home, ``~/`` allowed), or the local profile's path."""
        configured = self.section.remote_profile_dir
        if not configured:
            return str(self.ctx.profile_dir)
        if configured.startswith("~/") or configured == "~":
            configured = configured[2:]
        if configured.startswith("/"):
            return configured
        return f"{self.remote_home(host).rstrip('/')}/{configured}".rstrip("/")

    # -- remote commands --------------------------------------------------------------------------

    def run(self, host: str, body: str, setup: bool = True, timeout: float = CHECK_TIMEOUT) -> str:
        """Run ``body`` on ``host`` (after its env setup); its stdout, or SSHLaunchError on failure."""
        script = body
        if setup and self.env_setup(host).strip():
            script = f"{{\n{self.env_setup(host)}\n}} || exit {_SETUP_FAILED}\n{body}"
        try:
            result = self.connection(host).run(script, timeout=timeout)
        except SSHError as exc:
            raise SSHLaunchError(f"{exc}{_launcher_hint(exc)}") from exc
        if result.exit_status == _SETUP_FAILED and setup:
            raise SSHLaunchError(
                f"{host}: the environment setup failed ({_last_line(result.stderr) or 'non-zero status'}); "
                "fix [launcher.ssh] env_setup (or host_env_setup)"
            )
        if result.exit_status != 0:
            raise SSHLaunchError(
                f"{host}: remote command failed with status {result.exit_status} "
                f"({_last_line(result.stderr) or 'no error output'}): {body.splitlines()[0][:80]}"
            )
        return result.stdout

    def check_python(self, host: str, directories: tuple[str, ...] = ()) -> None:
        """Fail early, with the fix, when the remote Python is missing or lacks ipcluster; also makes
        ``directories`` (mode 0700) in the same round trip."""
        python = self.python(host)
        first = shlex.split(python)[0] if python.strip() else "python3"
        body = (
            f"command -v {shlex.quote(first)} >/dev/null 2>&1 || exit {_MISSING}\n"
            f"{python} -c 'import ipcluster' >/dev/null 2>&1 || exit {_NO_IPCLUSTER}"
        )
        if directories:
            quoted = " ".join(shlex.quote(d) for d in directories)
            body += f"\nmkdir -p {quoted} && chmod 700 {quoted}"
        try:
            self.run(host, body)
        except SSHLaunchError as exc:
            text = str(exc)
            if f"status {_MISSING}" in text:
                raise SSHLaunchError(
                    f"{host}: remote Python {python!r} not found; set [launcher.ssh] python (or host_python) "
                    "to its path, or activate it in env_setup"
                ) from None
            if f"status {_NO_IPCLUSTER}" in text:
                raise SSHLaunchError(
                    f"{host}: {python!r} cannot import ipcluster; install it there (pip install ipcluster) "
                    "or point [launcher.ssh] python / env_setup at an environment that has it"
                ) from None
            raise

    def spawn(
        self, host: str, commands: list[tuple[int, list[str], str]], prelude: str = ""
    ) -> list[RemoteProcess]:
        """Start ``(index, argv, remote log)`` detached on ``host`` (after the shell lines ``prelude``), in
        one round trip; returns them with their remote pids and start times."""
        python = self.python(host)
        lines = [prelude, "P=", "if command -v setsid >/dev/null 2>&1; then S=setsid; G=1; else S=; G=0; fi"]
        for _index, argv, log in commands:
            args = " ".join(shlex.quote(a) for a in argv)
            lines.append(f"nohup $S {python} {args} >{shlex.quote(log)} 2>&1 </dev/null &")
            lines.append('echo "pid $! $G"; P="$P $!"')
        lines.append(f"{_ALIVE_FN}; alive $P")
        out = self.run(host, "\n".join(line for line in lines if line))
        started = [line.split() for line in out.splitlines() if line.startswith("pid ")]
        times = dict(line.split(maxsplit=1) for line in out.splitlines() if line[:1].isdigit())
        if len(started) != len(commands):
            raise SSHLaunchError(
                f"{host}: could not start {len(commands)} processes (got: {out.strip()[:200]!r})"
            )
        procs = [
            RemoteProcess(host, int(fields[1]), log, index, group=fields[2] == "1")
            for (index, _argv, log), fields in zip(commands, started, strict=True)
        ]
        for proc in procs:
            proc.start_time = times.get(str(proc.pid), "")
        return procs

    def alive(self, host: str, procs: list[RemoteProcess]) -> dict[int, str]:
        """pid → start time of those ``procs`` on ``host`` still running (and not a reused pid)."""
        if not procs:
            return {}
        out = self.run(host, f"{_ALIVE_FN}; alive {' '.join(str(p.pid) for p in procs)}", setup=False)
        found = dict(line.split(maxsplit=1) for line in out.splitlines() if line.strip())
        result = {}
        for proc in procs:
            now = found.get(str(proc.pid))
            if now is None:
                continue
            if proc.start_time and now not in ("?", proc.start_time):
                continue  # the pid belongs to another process now
            result[proc.pid] = now
        return result

    def signal_host(self, host: str, procs: list[RemoteProcess], sig: str) -> None:
        targets = [f"-{p.pid}" if p.group else str(p.pid) for p in procs]
        if targets:
            self.run(host, f"kill -{sig} -- {' '.join(targets)} 2>/dev/null; true", setup=False)

    def by_host(self, procs: list[RemoteProcess] | None = None) -> dict[str, list[RemoteProcess]]:
        hosts: dict[str, list[RemoteProcess]] = {}
        for proc in self.processes if procs is None else procs:
            hosts.setdefault(proc.host, []).append(proc)
        return hosts

    def fetch_log(self, proc: RemoteProcess) -> Path | None:
        """Copy ``proc``'s remote log into the local log directory (best effort)."""
        local = self.local_log(proc)
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            self.connection(proc.host).get(proc.log, local, mode=0o644)
        except (OSError, IPClusterError):
            return None
        return local

    def local_log(self, proc: RemoteProcess) -> Path:
        return self.ctx.log_dir / f"{self.log_stem(proc.index)}-{_label(proc.host)}.log"

    def log_stem(self, index: int) -> str:
        raise NotImplementedError

    # -- the Launcher interface -------------------------------------------------------------------

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM each remote process (its group), wait up to ``timeout`` s, SIGKILL the rest; fetch logs."""
        timeout = self.stop_timeout if timeout is None else timeout
        errors = []
        for host, procs in self.by_host().items():
            try:
                self._stop_host(host, procs, timeout)
            except SSHLaunchError as exc:
                errors.append(str(exc))
            for proc in procs:
                self.fetch_log(proc)
        if errors:
            raise SSHLaunchError(f"could not stop every remote process: {errors[0]}")

    def _stop_host(self, host: str, procs: list[RemoteProcess], timeout: float) -> None:
        living = [p for p in procs if p.pid in self.alive(host, procs)]
        if not living:
            return
        self.signal_host(host, living, "TERM")
        deadline = time.monotonic() + timeout
        while living and time.monotonic() < deadline:
            time.sleep(0.1)
            living = [p for p in living if p.pid in self.alive(host, living)]
        if living:
            self.signal_host(host, living, "KILL")

    def signal(self, sig: int) -> None:
        for host, procs in self.by_host().items():
            self.signal_host(host, [p for p in procs if p.pid in self.alive(host, procs)], str(int(sig)))

    def poll(self) -> LauncherState:
        if not self.processes:
            return LauncherState.NOT_STARTED
        running = False
        for host, procs in self.by_host().items():
            try:
                live = self.alive(host, procs)
            except SSHLaunchError:
                return LauncherState.UNKNOWN  # the host cannot be asked right now
            running = running or bool(live)
            for proc in procs:
                if proc.pid not in live and not self.local_log(proc).exists():
                    self.fetch_log(proc)
        return LauncherState.RUNNING if running else LauncherState.STOPPED

    @property
    def log_paths(self) -> list[Path]:
        return [self.local_log(p) for p in self.processes]

    def describe(self) -> str:
        where = ", ".join(f"{p.host}:{p.log}" for p in self.processes) or "none started"
        return f"the ssh {self.role} launcher (remote logs: {where}; fetched into {self.ctx.log_dir})"

    def state_dict(self) -> dict[str, Any]:
        return {"processes": [p.to_dict() for p in self.processes]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.processes = [RemoteProcess.from_dict(d) for d in state.get("processes", [])]

    def _connection_name(self) -> str:
        label = self.ctx.cluster_id
        return f"ipcontroller-{label}-engine.json" if label else "ipcontroller-engine.json"

    def _security_files(self, host: str) -> str:
        return f"{self.remote_profile_dir(host)}/security"


class SSHEngineSetLauncher(EngineSetLauncher, SSHLauncher):
    """Engines on the hosts of ``[launcher.ssh] engines`` (or ``--hosts``).

    Without an explicit engine count (``-n`` / ``[cluster] n``) every host gets its listed number of engines;
    with one, ``n`` engines fill the hosts in order, each up to its number.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._profile_arg = str(self.ctx.profile_dir)

    def plan(self) -> dict[str, int]:
        """Host → how many engines to start there."""
        table = dict(self.section.engines)
        if not table:
            return {}
        total = sum(table.values())
        if self.ctx.config.cluster.n is None:
            return table
        if self.n > total:
            raise SSHLaunchError(
                f"asked for {self.n} engines but [launcher.ssh] engines has room for {total} "
                f"({', '.join(f'{h}={c}' for h, c in table.items())}); add hosts or raise their counts"
            )
        plan, left = {}, self.n
        for host, count in table.items():
            if left <= 0:
                break
            plan[host] = min(count, left)
            left -= plan[host]
        return plan

    def log_stem(self, index: int) -> str:
        return f"ipengine-{self.ctx.cluster_label}-{index}"

    def profile_dir_arg(self) -> str:
        return self._profile_arg

    def start(self) -> None:
        plan = self.plan()
        if not plan:
            raise SSHLaunchError(
                "the ssh launcher has no hosts; list them in [launcher.ssh] engines "
                '(e.g. engines = {"node1" = 4}) or pass --hosts node1=4'
            )
        local_file = self.ctx.profile_dir / "security" / self._connection_name()
        if not local_file.exists():
            raise SSHLaunchError(
                f"no engine connection file {local_file}; start the controller first (ipcluster start)"
            )
        self.n = sum(plan.values())
        index = self.first_index
        try:
            for host, count in plan.items():
                profile = self.remote_profile_dir(host)
                self._profile_arg = profile
                self.check_python(host, (f"{profile}/security", f"{profile}/log"))
                remote = f"{profile}/security/{self._connection_name()}"
                tmp = self._upload(host, local_file, remote)
                commands = []
                for i in range(index, index + count):
                    log = f"{profile}/log/ssh-{self.log_stem(i)}.log"
                    commands.append((i, self.program_args(i), log))
                self.processes += self.spawn(
                    host, commands, f"mv -f {shlex.quote(tmp)} {shlex.quote(remote)}"
                )
                index += count
        except BaseException:
            self.stop()
            raise

    def _upload(self, host: str, local: Path, remote: str) -> str:
        """SFTP ``local`` (0600) next to ``remote`` under a temporary name, returned; the spawn renames it
        into place, so a shared file system never sees the file truncated or half written."""
        tmp = f"{remote}.{int(time.time() * 1e6)}.tmp"
        try:
            self.connection(host).put(local, tmp, mode=0o600)
        except (OSError, SSHError) as exc:
            raise SSHLaunchError(f"{host}: could not copy {local.name} to {remote} ({exc})") from exc
        return tmp

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.n = len(self.processes) or self.n


class SSHControllerLauncher(ControllerLauncher, SSHLauncher):
    """The controller on ``[launcher.ssh] controller_host``; its connection files are fetched back here.

    The controller binds ``[controller] ip`` on that host: use ``0.0.0.0`` with ``location`` set to an address
    the clients and engines can reach, or set ``[controller] ssh``/``enginessh`` so they tunnel.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetched = False

    @property
    def host(self) -> str:
        host = self.section.controller_host
        if not host:
            raise SSHLaunchError(
                'controller_launcher = ssh needs a host: set [launcher.ssh] controller_host = "node0"'
            )
        return host

    def log_stem(self, index: int) -> str:
        return f"ipcontroller-{self.ctx.cluster_label}"

    def profile_dir_arg(self) -> str:
        return self.remote_profile_dir(self.host)

    def start(self) -> None:
        host = self.host
        profile = self.remote_profile_dir(host)
        self.check_python(host, (f"{profile}/security", f"{profile}/log"))
        log = f"{profile}/log/ssh-{self.log_stem(0)}.log"
        try:
            self.processes = self.spawn(host, [(0, self.program_args(0), log)])
        except BaseException:
            self.stop()
            raise

    def poll(self) -> LauncherState:
        state = super().poll()
        if state == LauncherState.RUNNING and not self.fetched:
            self.fetch_connection_files()
        return state

    def fetch_connection_files(self) -> bool:
        """Copy both connection files from the controller host once it has written them."""
        host = self.host
        names = [
            self._connection_name().replace("-engine.json", f"-{role}.json") for role in ("client", "engine")
        ]
        remote = [f"{self._security_files(host)}/{n}" for n in names]
        quoted = " ".join(shlex.quote(r) for r in remote)
        present = self.run(host, f'for f in {quoted}; do [ -s "$f" ] && echo "$f"; done; true', setup=False)
        if len(present.split()) < len(remote):
            return False
        security = self.ctx.profile_dir / "security"
        security.mkdir(parents=True, exist_ok=True)
        for path, name in zip(remote, names, strict=True):
            local = security / name
            if str(local) == path:
                continue  # same file system and path: already here
            tmp = local.with_suffix(".fetch")
            self.connection(host).get(path, tmp, mode=0o600)
            tmp.replace(local)
        self.fetched = True
        return True

    @property
    def returncode(self) -> int | None:
        return None


def _launcher_hint(exc: SSHError) -> str:
    """Where the ssh launcher's user sets what the tunnel layer's message calls an option."""
    if isinstance(exc, UnknownHostKey):
        return " (ssh launcher: [launcher.ssh] ssh_accept_new = true)"
    if isinstance(exc, (SSHAuthError, SSHKeyFileError)):
        return " (ssh launcher: [launcher.ssh] sshkey)"
    return ""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


controller_launcher = SSHControllerLauncher
engine_launcher = SSHEngineSetLauncher
