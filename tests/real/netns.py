"""Two network namespaces joined by a veth pair, as two "hosts" for tests that need separate networks.

Names are unique per run (pid + random suffix), so parallel runs do not collide; ``close()`` kills whatever
still runs inside and deletes both namespaces (which also removes the veth pair).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess

__all__ = ["NetnsPair", "netns_missing_reason"]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def netns_missing_reason() -> str | None:
    """Why namespaces cannot be made here (None if they can), found by trying one."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"ipcprobe{os.getpid()}{secrets.token_hex(2)}"
    try:
        probe = _ip("netns", "add", name, check=False)
    except FileNotFoundError:
        return "the ip command is missing: apt-get install iproute2"
    if probe.returncode:
        return f"'ip netns add' is not permitted here: {probe.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


class NetnsPair:
    """Namespace ``a`` (10.<x>.<y>.1) and ``b`` (.2) on one /24; loopback up in both."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}{secrets.token_hex(2)}"
        self.a, self.b = f"ipcA{tag}", f"ipcB{tag}"
        octet = 16 + int(secrets.token_hex(1), 16) % 200
        self.addr_a, self.addr_b = f"10.231.{octet}.1", f"10.231.{octet}.2"
        self._veth = (f"va{tag}"[:15], f"vb{tag}"[:15])
        self.created: list[str] = []
        try:
            for name in (self.a, self.b):
                _ip("netns", "add", name)
                self.created.append(name)
            _ip(
                "link",
                "add",
                self._veth[0],
                "netns",
                self.a,
                "type",
                "veth",
                "peer",
                "name",
                self._veth[1],
                "netns",
                self.b,
            )
            _ip("-n", self.a, "addr", "add", f"{self.addr_a}/24", "dev", self._veth[0])
            _ip("-n", self.b, "addr", "add", f"{self.addr_b}/24", "dev", self._veth[1])
            for name, dev in ((self.a, self._veth[0]), (self.b, self._veth[1])):
                _ip("-n", name, "link", "set", "lo", "up")
                _ip("-n", name, "link", "set", dev, "up")
        except BaseException:
            self.close()
            raise

    def exec_prefix(self, name: str) -> list[str]:
        """Prefix a command line with this to run it inside namespace ``name``."""
        return ["ip", "netns", "exec", name]

    def close(self) -> None:
        """Kill every process left in the namespaces, then delete them."""
        for name in self.created:
            pids = _ip("netns", "pids", name, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for name in self.created:
            _ip("netns", "del", name, check=False)
        self.created = []
