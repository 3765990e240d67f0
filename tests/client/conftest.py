"""A real cluster for the client tests: one controller and a few engines in a temp profile, per module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from client_cluster import RunningCluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    profile_dir = tmp_path_factory.mktemp("client-profile")
    running = RunningCluster(profile_dir)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def rc(cluster: RunningCluster) -> Iterator[object]:
    client = cluster.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def small_cluster(tmp_path: Path) -> Iterator[RunningCluster]:
    """A private cluster of 2 engines with a fast heartbeat, for tests that kill or stop engines."""
    running = RunningCluster(tmp_path, n=2, ping=200)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def profile_dir(cluster: RunningCluster) -> Path:
    return cluster.profile_dir


@pytest.fixture(autouse=True)
def _pickle_test_functions_by_value(request: pytest.FixtureRequest) -> None:
    """Engines cannot import test modules: send their functions by value, like a script's."""
    import cloudpickle

    cloudpickle.register_pickle_by_value(request.module)
