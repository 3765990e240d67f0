"""Connecting through SSH (a real throwaway sshd), and the location rule for the file's ssh server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, so `real` imports as a package

from real.fixtures import sshd  # noqa: E402,F401

import ipcluster as ipp  # noqa: E402
from ipcluster.client.connect import choose_ssh_server  # noqa: E402


def test_location_rule():
    local = {"location": "127.0.0.1", "interface": "127.0.0.1", "ssh": "me@gateway"}
    assert choose_ssh_server(local, None, None) is None  # controller here: the file's ssh is not used
    remote = {"location": "203.0.113.9", "interface": "0.0.0.0", "ssh": "me@gateway"}
    assert choose_ssh_server(remote, None, None) == "me@gateway"
    assert choose_ssh_server(local, "other@host", None) == "other@host"  # an explicit server always wins
    with pytest.warns(RuntimeWarning, match="sshserver"):
        assert choose_ssh_server({"location": "203.0.113.9", "interface": "127.0.0.1"}, None, None) is None


def test_client_through_ssh_tunnel(cluster, sshd):  # noqa: F811 - the imported fixture
    from ipcluster.tunnel import close_all

    empty_config = sshd.directory / "empty_ssh_config"
    empty_config.touch()
    options = {
        "known_hosts": str(sshd.known_hosts),
        "ssh_config": str(empty_config),
        "allow_agent": False,
        "look_for_keys": False,
        "interactive": False,
    }
    try:
        with ipp.Client(
            str(cluster.client_file), sshserver=sshd.server, sshkey=str(sshd.client_key), ssh_options=options
        ) as rc:
            ports = {url.rsplit(":", 1)[1] for url in rc._urls.values()}
            assert all(url.startswith("tcp://127.0.0.1:") for url in rc._urls.values())
            file_ports = {str(rc.connection_info[c]) for c in rc._urls}
            assert not ports & file_ports
            rc.wait_for_engines(len(cluster.engines), timeout=60)
            assert rc[:].apply_sync(lambda: "through ssh") == ["through ssh"] * len(rc)
    finally:
        close_all()
