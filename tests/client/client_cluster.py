"""Start a real cluster (one controller, a few engines) for the client tests and stop it afterwards."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: cluster_helpers

from cluster_helpers import read_stderr, start_controller, stop_process  # noqa: E402

N_ENGINES = 3


def start_engine(profile_dir: Path, *args: str) -> subprocess.Popen:
    log = profile_dir / "log" / f"ipengine-test-{time.monotonic_ns()}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ipcluster.engine", "--profile-dir", str(profile_dir), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    proc.stderr_path = log  # type: ignore[attr-defined]
    return proc


class RunningCluster:
    """The processes of a test cluster; ``client()`` connects a new Client to it."""

    def __init__(self, profile_dir: Path, n: int = N_ENGINES, ping: int = 500) -> None:
        self.profile_dir = profile_dir
        self.controller = start_controller(profile_dir, "--ping", str(ping))
        self.client_file = Path(self.controller.client_file)  # type: ignore[attr-defined]
        self.engines = [start_engine(profile_dir) for _ in range(n)]

    def client(self, n: int | None = None, **kwargs: object):
        import ipcluster as ipp

        rc = ipp.Client(profile_dir=str(self.profile_dir), **kwargs)
        try:
            rc.wait_for_engines(len(self.engines) if n is None else n, timeout=60)
        except Exception:
            rc.close()
            raise
        return rc

    def add_engine(self) -> subprocess.Popen:
        proc = start_engine(self.profile_dir)
        self.engines.append(proc)
        return proc

    def logs(self) -> str:
        parts = [f"--- controller\n{read_stderr(self.controller)[-3000:]}"]
        for e in self.engines:
            parts.append(f"--- engine {e.pid}\n{read_stderr(e)[-2000:]}")
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in self.engines:
            stop_process(proc)
        stop_process(self.controller)
