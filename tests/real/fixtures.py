"""pytest fixtures for real components: a throwaway sshd, and a pair of network namespaces.

Use from a conftest.py with ``from real.fixtures import *`` (tests/ on sys.path) or register as a plugin:
``pytest_plugins = ["tests.real.fixtures"]`` in the top-level conftest (with the repo root on sys.path).
Each fixture skips its test with the reason when the component cannot run here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .netns import NetnsPair, netns_missing_reason
from .sshd import SSHServer, sshd_missing_reason

__all__ = ["sshd", "sshd_factory", "netns_pair"]


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """One sshd shared by the whole session, for tests that do not restart it or change its keys."""
    reason = sshd_missing_reason()
    if reason:
        pytest.skip(reason)
    server = SSHServer(tmp_path_factory.mktemp("sshd")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sshd_factory(tmp_path: Path) -> Iterator[Callable[..., SSHServer]]:
    """Make private sshd servers (started) for a test that kills, restarts or re-keys them; all stopped after."""
    reason = sshd_missing_reason()
    if reason:
        pytest.skip(reason)
    servers: list[SSHServer] = []

    def make(start: bool = True, **kwargs: object) -> SSHServer:
        server = SSHServer(tmp_path / f"sshd{len(servers)}", **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start() if start else server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def netns_pair() -> Iterator[NetnsPair]:
    """Two fresh network namespaces joined by a veth pair; deleted (and emptied) after the test."""
    reason = netns_missing_reason()
    if reason:
        pytest.skip(reason)
    pair = NetnsPair()
    try:
        yield pair
    finally:
        pair.close()
