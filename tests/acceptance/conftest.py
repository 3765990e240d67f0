"""One real cluster per acceptance module, started and stopped with the ``ipcluster`` command."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from acceptance_cluster import UserCluster  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UserCluster]:
    running = UserCluster(tmp_path_factory.mktemp("ipcluster_home"), n=3)
    try:
        yield running
    finally:
        running.stop()
