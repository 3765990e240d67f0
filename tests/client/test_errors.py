"""Errors a user sees: remote exceptions, several engines failing, bad input, wrong key, no controller."""

from __future__ import annotations

import json
import os
import threading
import time
import traceback

import pytest

import ipcluster as ipp
from ipcluster.error import AuthenticationError, SerializationError


def fails(x):
    raise ValueError(f"bad value {x}")


def test_remote_error_carries_name_value_traceback_engine(rc):
    ar = rc[0].apply_async(fails, 3)
    with pytest.raises(ipp.RemoteError) as info:
        ar.get(30)
    err = info.value
    assert err.ename == "ValueError"
    assert err.evalue == "bad value 3"
    assert "bad value 3" in err.traceback and "fails" in err.traceback
    assert err.engine_info["engine_id"] == rc.ids[0]
    assert str(err).startswith(f"[{rc.ids[0]}:apply]: ValueError: bad value 3")
    printed = "".join(traceback.format_exception(err))
    assert "[Engine Exception on engine" in printed and "in fails" in printed
    assert err.render_traceback()[0].startswith("[Engine Exception on engine")


def test_composite_error_for_several_engines(rc):
    with pytest.raises(ipp.CompositeError) as info:
        rc[:].apply_sync(fails, 1)
    err = info.value
    assert isinstance(err, ipp.RemoteError)
    assert len(err.elist) == len(rc)
    assert {e.engine_info["engine_id"] for e in err.elist} == set(rc.ids)
    assert "one or more exceptions" in str(err)
    with pytest.raises(ipp.RemoteError):
        err.raise_exception(0)


def test_map_errors_are_collected(rc):
    with pytest.raises(ipp.CompositeError):
        rc.load_balanced_view().map_sync(lambda x: 1 / x, [1, 0, 2, 0])


def test_unpicklable_function_fails_locally_naming_it(rc):
    lock = threading.Lock()

    def uses_lock():
        return lock.locked()

    with pytest.raises(SerializationError, match="uses_lock"):
        rc[:].apply_async(uses_lock)
    with pytest.raises(SerializationError, match="lock"):
        rc[:].apply_async(lambda x: x, lock)
    with pytest.raises(TypeError, match="callable"):
        rc[:].apply_async(42)


def test_unpicklable_result_is_a_remote_error(rc):
    with pytest.raises(ipp.RemoteError):
        rc[0].apply_sync(lambda: __import__("threading").Lock())


def test_bad_targets(rc):
    with pytest.raises(IndexError, match="No such engine"):
        rc.direct_view([12345]).apply_sync(lambda: 1)
    with pytest.raises(TypeError):
        rc.direct_view("some").apply_sync(lambda: 1)


def test_wrong_key_is_reported_clearly(cluster, tmp_path):
    info = json.loads(cluster.client_file.read_text())
    info["key"] = "0" * 64
    path = tmp_path / "wrong-key.json"
    path.write_text(json.dumps(info))
    os.chmod(path, 0o600)
    start = time.monotonic()
    with pytest.raises(AuthenticationError, match="rejected this client's signature"):
        ipp.Client(str(path), timeout=10)
    assert time.monotonic() - start < 9


def test_no_controller_times_out_with_a_hint(tmp_path):
    import socket

    ports = []
    for _ in range(6):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        ports.append(s.getsockname()[1])
        s.close()
    info = {
        "version": 1,
        "key": "ab" * 16,
        "signature_scheme": "hmac-sha256",
        "transport": "tcp",
        "interface": "127.0.0.1",
        "location": "127.0.0.1",
        "ssh": "",
        "registration": ports[0],
        "mux": ports[1],
        "task": ports[2],
        "control": ports[3],
        "iopub": ports[4],
        "notification": ports[5],
    }
    start = time.monotonic()
    with pytest.raises(ipp.TimeoutError, match="Hub connection request timed out") as exc:
        ipp.Client(info, timeout=1)
    assert "ipcluster start" in str(exc.value)
    assert time.monotonic() - start < 8


def test_missing_connection_file(tmp_path):
    with pytest.raises(ipp.error.ConnectionFileError, match="does not exist"):
        ipp.Client(str(tmp_path / "nope.json"), timeout=0.2)
    with pytest.raises(ipp.error.ConnectionFileError, match="bare url"):
        ipp.Client("tcp://127.0.0.1:5555", timeout=0.2)


def test_failed_connections_leave_no_threads(cluster, tmp_path):
    def io_threads():
        return [t for t in threading.enumerate() if t.name == "ipcluster-client-io" and t.is_alive()]

    before = len(io_threads())
    info = json.loads(cluster.client_file.read_text())
    info["key"] = "1" * 64
    with pytest.raises(AuthenticationError):
        ipp.Client(info, timeout=5)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        info["registration"] = s.getsockname()[1]  # nothing listens there
    with pytest.raises(ipp.TimeoutError):
        ipp.Client(info, timeout=0.5)
    assert len(io_threads()) == before
