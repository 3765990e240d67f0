"""Shared-memory buffers (docs/protocol.md §1.1) and chunked HMAC digests, with real files and mappings."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from ipcluster import wire
from ipcluster.error import InvalidSignature
from ipcluster.wire import shm
from ipcluster.wire.signing import CHUNK, CHUNKED_FROM, make_signer


@pytest.fixture
def shm_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(shm.SHM_DIR_ENV, str(tmp_path))
    return tmp_path


def _session() -> wire.Session:
    return wire.Session(key=b"k" * 32)


def test_an_exported_buffer_maps_back_and_matches_its_digest(shm_dir):
    session = _session()
    data = np.arange(1_000_000, dtype=np.int64)
    exporter = shm.ShmExporter("ab12", threshold=1024)
    frames, entries = exporter.export([b"small", memoryview(data)])
    assert frames[0] == b"small" and frames[1] == b"" and entries[0] is None
    assert entries[1]["size"] == data.nbytes
    path = shm_dir / entries[1]["name"]
    assert path.stat().st_mode & 0o777 == 0o600
    header = {
        "buffers": [session.signer.digest_buffer(b) for b in (b"small", memoryview(data))],
        "shm": entries,
    }
    shm.attach(header, frames)
    session.check_buffers(header, frames)
    assert np.array_equal(np.frombuffer(frames[1], dtype=np.int64), data)


def test_the_mapping_is_private_and_outlives_the_file(shm_dir):
    exporter = shm.ShmExporter("ab12", threshold=1)
    frames, entries = exporter.export([b"x" * 4096])
    first, second = list(frames), list(frames)
    header = {"shm": entries}
    shm.attach(header, first)
    shm.attach(header, second)
    exporter.hold("m1", entries)
    exporter.release("m1")
    assert not (shm_dir / entries[0]["name"]).exists()
    first[0][0] = ord("y")  # an engine writing to its array
    assert bytes(second[0][:1]) == b"x" and bytes(first[0][:1]) == b"y"


def test_changed_file_bytes_fail_the_digest_check(shm_dir):
    session = _session()
    exporter = shm.ShmExporter("ab12", threshold=1)
    payload = os.urandom(10000)
    frames, entries = exporter.export([payload])
    header = {"buffers": [session.signer.digest_buffer(payload)], "shm": entries}
    with open(shm_dir / entries[0]["name"], "r+b") as f:
        f.write(b"evil")
    shm.attach(header, frames)
    with pytest.raises(InvalidSignature, match="buffer 0 does not match"):
        session.check_buffers(header, frames)


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ({"name": "../etc/passwd", "size": 10}, "malformed shm entry"),
        ({"name": "ipcluster-buf-1-ab-999", "size": 10}, "cannot be opened"),
        ("nonsense", "malformed shm entry"),
    ],
)
def test_bad_entries_are_refused_with_the_reason(shm_dir, entry, why):
    with pytest.raises(shm.ShmError, match=why):
        shm.attach({"shm": [entry]}, [b""])


def test_a_size_mismatch_is_refused(shm_dir):
    exporter = shm.ShmExporter("ab12", threshold=1)
    frames, entries = exporter.export([b"z" * 100])
    entries[0]["size"] = 50
    with pytest.raises(shm.ShmError, match="has 100 bytes, expected 50"):
        shm.attach({"shm": entries}, frames)


def test_a_file_shared_by_two_messages_goes_with_the_last_reply(shm_dir):
    exporter = shm.ShmExporter("ab12", threshold=1)
    _, entries = exporter.export([b"q" * 10])
    exporter.hold("m1", entries)
    exporter.hold("m2", entries)
    path = shm_dir / entries[0]["name"]
    exporter.release("m1")
    assert path.exists()
    exporter.release("m2")
    assert not path.exists() and exporter.live_files() == []


def test_close_removes_every_file(shm_dir):
    exporter = shm.ShmExporter("ab12", threshold=1)
    _, entries = exporter.export([b"a" * 10, b"b" * 10])
    exporter.hold("m1", entries)
    exporter.close()
    assert list(shm_dir.iterdir()) == []


def test_a_failed_hash_leaves_no_file(shm_dir):
    exporter = shm.ShmExporter("ab12", threshold=1)

    def broken() -> None:
        raise RuntimeError("hash failed")

    with pytest.raises(RuntimeError):
        exporter.export_while([b"a" * 100], broken)
    assert list(shm_dir.iterdir()) == []


def test_only_an_engine_with_our_probe_is_local(shm_dir):
    exporter = shm.ShmExporter("ab12", threshold=1)
    probe = shm.advertise("e1")
    assert probe is not None and probe.stat().st_mode & 0o777 == 0o600
    assert exporter.is_local("e1")
    assert not exporter.is_local("e2")  # no probe: another host, container or user
    shm.withdraw(probe)
    assert not probe.exists()


def test_threshold_zero_or_no_directory_disables_sharing(shm_dir, monkeypatch):
    assert not shm.ShmExporter("ab12", threshold=0).wants([b"x" * 10_000_000])
    monkeypatch.setenv(shm.SHM_DIR_ENV, "")
    assert not shm.ShmExporter("ab12").wants([b"x" * 10_000_000])
    with pytest.raises(shm.ShmError, match="no shared-memory directory"):
        shm.attach({"shm": [{"name": "ipcluster-buf-1-ab-1", "size": 1}]}, [b""])


def test_stale_files_are_those_of_dead_processes(shm_dir):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    (shm_dir / f"ipcluster-buf-{dead_pid}-ab-1").write_bytes(b"x")
    (shm_dir / f"ipcluster-buf-{os.getpid()}-ab-1").write_bytes(b"x")
    (shm_dir / "ipcluster-engine-dead").write_text(f"dead {dead_pid}\n")
    (shm_dir / "ipcluster-engine-live").write_text(f"live {os.getpid()}\n")
    names = sorted(p.name for p in shm.stale_files())
    assert names == [f"ipcluster-buf-{dead_pid}-ab-1", "ipcluster-engine-dead"]


def test_the_default_directory_is_dev_shm(monkeypatch):
    monkeypatch.delenv(shm.SHM_DIR_ENV, raising=False)
    expected = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    assert (str(shm.shm_dir()) if shm.shm_dir() else None) == expected


def test_big_hmac_digests_are_chunked_and_position_sensitive():
    signer = make_signer(b"k" * 32, "hmac-sha256")
    big = bytearray(os.urandom(CHUNKED_FROM + CHUNK // 2))
    digest = signer.digest_buffer(big)
    assert digest == signer.digest_buffer(memoryview(big))  # same bytes, same digest, whatever the type
    big[-1] ^= 1
    assert signer.digest_buffer(big) != digest
    # two chunks swapped: the chunk digests are combined in order
    swapped = big[CHUNK : 2 * CHUNK] + big[:CHUNK] + big[2 * CHUNK :]
    assert signer.digest_buffer(swapped) != signer.digest_buffer(big)
    small = os.urandom(1000)
    import hashlib
    import hmac

    assert signer.digest_buffer(small) == hmac.new(b"k" * 32, small, hashlib.sha256).hexdigest()
