"""Fixtures for the controller tests: a real ipcontroller process per test, fake engines and clients."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: cluster_helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))  # controller_peers

from cluster_helpers import start_controller, stop_process, wait_for  # noqa: E402
from controller_peers import FakeClient, FakeEngine  # noqa: E402


class Cluster:
    """A running controller plus the fake peers a test made; everything is closed at teardown."""

    def __init__(self, proc, profile_dir: Path) -> None:
        self.proc = proc
        self.profile_dir = profile_dir
        self.peers: list = []
        self._observer: FakeClient | None = None

    def engine(self, register: bool = True, **kw) -> FakeEngine:
        eng = FakeEngine(self.proc.engine_file, **kw)
        self.peers.append(eng)
        if register:
            eng.register()
            if eng.beat:
                self.wait_registered(eng)
        return eng

    def wait_registered(self, eng: FakeEngine) -> None:
        """Registration completes on the first pong: wait until the hub lists the engine."""
        if self._observer is None:
            self._observer = self.client()
        obs = self._observer
        wait_for(
            lambda: obs.query("connection_request")["content"]["engines"].get(str(eng.id)) == eng.uuid,
            what=f"engine {eng.id} to finish registering",
        )

    def client(self, **kw) -> FakeClient:
        cl = FakeClient(self.proc.client_file, **kw)
        self.peers.append(cl)
        return cl

    def close(self) -> None:
        for peer in self.peers:
            peer.close()
        stop_process(self.proc)


@pytest.fixture
def start_cluster(tmp_path: Path) -> Iterator:
    """``start_cluster(*controller_args) -> Cluster``; default heartbeat 200 ms."""
    made: list[Cluster] = []

    def start(*args: str) -> Cluster:
        extra = list(args)
        if "--ping" not in extra:
            extra = ["--ping", "200", *extra]
        profile = tmp_path / f"profile{len(made)}"
        cluster = Cluster(start_controller(profile, *extra), profile)
        made.append(cluster)
        return cluster

    yield start
    for cluster in made:
        cluster.close()


@pytest.fixture
def cluster(start_cluster) -> Cluster:
    return start_cluster()
