"""A throwaway OpenSSH server for tests: 127.0.0.1 at a random free port, key-only, in its own directory.

Each :class:`SSHServer` generates its own host key and client key and writes a known_hosts file for itself,
so tests never read or write the real ``~/.ssh`` and can run in parallel. Needs ``/usr/sbin/sshd`` and
``ssh-keygen`` (Debian packages ``openssh-server`` and ``openssh-client``, installed by ``.ci/run``).
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"

__all__ = ["SSHD", "SSHServer", "sshd_missing_reason", "free_port", "keygen", "wait_until"]


def sshd_missing_reason() -> str | None:
    """Why a real sshd cannot run here (None if it can): the reason a test skips with."""
    if not os.path.exists(SSHD):
        return f"{SSHD} is missing: apt-get install openssh-server openssh-client (done by .ci/run)"
    if not os.path.exists(SSH_KEYGEN):
        return "ssh-keygen is missing: apt-get install openssh-client (done by .ci/run)"
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out as free (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def keygen(path: Path, comment: str, key_type: str = "ed25519", passphrase: str = "") -> Path:
    """Create an OpenSSH key pair at ``path`` / ``path.pub`` and return ``path``."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", key_type, "-N", passphrase, "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


def wait_until(predicate, timeout: float, interval: float = 0.01, what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def _descendants(pid: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found: list[int] = []
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier and child not in found}
        found.extend(frontier)
    return found


class SSHServer:
    """One sshd process. ``start()``/``stop()``/``restart()`` keep the same port, keys and directory.

    Attributes: ``host``, ``port``, ``user`` (the user running the tests), ``client_key`` (authorized),
    ``host_key``, ``known_hosts`` (records this server's host key), ``directory``, ``log``.
    """

    def __init__(self, directory: Path, host: str = "127.0.0.1", netns: str | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o755)
        self.host = host
        self.netns = netns
        self.user = getpass.getuser()
        self.port = 0
        self.host_key = self.directory / "host_ed25519"
        self.client_key = self.directory / "id_ed25519"
        self.known_hosts = self.directory / "known_hosts"
        self.authorized_keys = self.directory / "authorized_keys"
        self.config = self.directory / "sshd_config"
        self.log = self.directory / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        keygen(self.host_key, "testhost")
        keygen(self.client_key, "testuser")
        self.authorized_keys.write_text(self.client_key.with_suffix(".pub").read_text())
        os.chmod(self.authorized_keys, 0o644)
        self.write_known_hosts()

    @property
    def server(self) -> str:
        """The ``user@host:port`` string to hand to the code under test."""
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def write_known_hosts(self, path: Path | None = None) -> Path:
        """(Re)write a known_hosts file holding this server's current host key."""
        path = path or self.known_hosts
        if self.port:
            key = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
            path.write_text(f"{self.known_hosts_name} {key}\n")
        return path

    def new_host_key(self) -> None:
        """Replace the host key (as a reinstalled server would); takes effect at the next restart."""
        for suffix in ("", ".pub"):
            Path(str(self.host_key) + suffix).unlink()
        keygen(self.host_key, "testhost-reinstalled")

    def _write_config(self, extra: str) -> None:
        self.config.write_text(
            f"Port {self.port}\nListenAddress {self.host}\nHostKey {self.host_key}\nPidFile none\n"
            f"AuthorizedKeysFile {self.authorized_keys}\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "UsePAM no\nStrictModes no\nAllowTcpForwarding yes\nX11Forwarding no\nPrintMotd no\n"
            "Subsystem sftp internal-sftp\nLogLevel VERBOSE\nMaxStartups 100\nMaxSessions 100\n" + extra
        )

    def _prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def start(self, timeout: float = 10.0) -> SSHServer:
        """Start sshd (on a new random port the first time) and wait until it accepts connections."""
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir sshd insists on
        for attempt in range(5):
            first = not self.port
            if first:
                self.port = free_port(self.host) if not self.netns else 2222 + attempt
                self.write_known_hosts()
            # OpenSSH >= 9.8 would otherwise slow down a client that we kill sessions of on purpose
            extra = "PerSourcePenalties no\n"
            self._write_config(extra)
            if subprocess.run(
                self._prefix() + [SSHD, "-t", "-f", str(self.config)], capture_output=True
            ).returncode:
                self._write_config("")
            self.log.write_bytes(b"")
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    self._prefix() + [SSHD, "-D", "-e", "-f", str(self.config)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                text = self.log.read_text(errors="replace")
                if "Server listening" in text:
                    return self
                if self.proc.poll() is not None:
                    break
                time.sleep(0.01)
            self.stop()
            if not ("Address already in use" in text and first):
                raise RuntimeError(f"sshd did not start on {self.host}:{self.port}:\n{text[-2000:]}")
            self.port = 0
        raise RuntimeError("sshd could not find a free port in 5 attempts")

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (descendants of the listener)."""
        return _descendants(self.proc.pid) if self.proc and self.proc.poll() is None else []

    def kill_sessions(self, sig: int = signal.SIGKILL) -> int:
        """Cut every client connection (a network blip for the clients); the listener keeps running."""
        pids = self.session_pids()
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        return len(pids)

    def stop(self) -> None:
        """Stop the listener and every session it spawned; wait for them (no process is left behind)."""
        if self.proc is None:
            return
        sessions = self.session_pids()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in sessions:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(
            lambda: not any(Path(f"/proc/{p}").exists() and _alive(p) for p in sessions), 5, what="sessions"
        )
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port with the same (or a replaced) host key."""
        self.stop()
        self.start()

    def ssh_command(self, *extra: str) -> list[str]:
        """An OpenSSH client command line for this server: strict host key checking, this key only."""
        return [
            "ssh",
            "-p",
            str(self.port),
            "-i",
            str(self.client_key),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-F",
            "/dev/null",
            *extra,
            f"{self.user}@{self.host}",
        ]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
