"""Big buffers to engines on this machine go through shared memory (docs/client.md), against a real cluster."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ipcluster import Reference
from ipcluster.wire import shm

BIG = np.arange(600_000, dtype=np.float64)  # 4.8 MB: above the 1 MiB threshold


def where_is(obj: object) -> str:
    """On the engine: 'shm' when the array's memory is a file mapping, else 'frame'."""
    import mmap

    for _ in range(20):
        if isinstance(obj, mmap.mmap):
            return "shm"
        obj = obj.obj if isinstance(obj, memoryview) else getattr(obj, "base", None)
        if obj is None:
            break
    return "frame"


def our_files() -> list[str]:
    directory = shm.shm_dir()
    prefix = f"{shm.BUFFER_PREFIX}{os.getpid()}-"
    return [p.name for p in directory.iterdir() if p.name.startswith(prefix)] if directory else []


pytestmark = pytest.mark.skipif(shm.shm_dir() is None, reason="no shared-memory directory on this host")


def test_a_pushed_array_is_mapped_on_every_local_engine_and_the_file_is_gone(rc):
    view = rc[:]
    view.push({"big": BIG}, block=True)
    assert view.apply_sync(where_is, Reference("big")) == ["shm"] * len(rc.ids)
    assert view.apply_sync(lambda a: float(a.sum()), Reference("big")) == [float(BIG.sum())] * len(rc.ids)
    assert our_files() == []


def test_each_engine_writes_to_its_own_copy(rc):
    view = rc[:]
    view.push({"mine": BIG}, block=True)
    first, others = rc.ids[0], rc.ids[1:]

    def scribble(a) -> None:
        a[:10] = -1.0

    rc[first].apply_sync(scribble, Reference("mine"))
    assert rc[first].apply_sync(lambda a: float(a[0]), Reference("mine")) == -1.0
    assert rc[others].apply_sync(lambda a: float(a[0]), Reference("mine")) == [0.0] * len(others)
    assert BIG[0] == 0.0


def test_scatter_and_apply_arguments_use_it_too(rc):
    view = rc[:]
    view.scatter("part", np.arange(3_000_000, dtype=np.float64), block=True)
    assert set(view.apply_sync(where_is, Reference("part"))) == {"shm"}
    total = rc[rc.ids[0]].apply_sync(lambda arr: float(arr.sum()), BIG)
    assert total == float(BIG.sum())
    assert our_files() == []


def test_threshold_zero_sends_through_the_sockets(cluster):
    client = cluster.client(shm_threshold=0)
    try:
        client[:].push({"sock": BIG}, block=True)
        assert set(client[:].apply_sync(where_is, Reference("sock"))) == {"frame"}
    finally:
        client.close()


def test_an_engine_whose_probe_we_cannot_see_gets_frames(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv(shm.SHM_DIR_ENV, str(tmp_path))  # as from another host or container
    client = cluster.client()
    try:
        client[:].push({"remote": BIG}, block=True)
        assert set(client[:].apply_sync(where_is, Reference("remote"))) == {"frame"}
        assert [p.name for p in tmp_path.glob(f"{shm.BUFFER_PREFIX}*")] == []  # only the client's probe
    finally:
        client.close()


def test_a_vanished_file_is_an_error_naming_it_not_a_hang(cluster, monkeypatch):
    client = cluster.client()
    real_write = client._shm._write

    def write_then_lose(buf, size, owner_pid=None):
        name = real_write(buf, size, owner_pid)
        os.unlink(os.path.join(client._shm.directory, name))
        return name

    monkeypatch.setattr(client._shm, "_write", write_then_lose)
    try:
        with pytest.raises(Exception, match="cannot be opened"):
            client[client.ids[0]].push({"lost": BIG}, block=True)
        assert client[client.ids[0]].apply_sync(lambda: 1 + 1) == 2  # the engine keeps serving
    finally:
        client.close()


def test_closing_a_client_removes_files_of_unanswered_requests(cluster):
    client = cluster.client()
    eid = client.ids[-1]
    client[eid].apply_async(__import__("time").sleep, 2)
    client[eid].push({"late": BIG}, block=False)  # queued behind the sleep: no reply yet
    assert len(our_files()) == 1
    client.close()
    assert our_files() == []


def test_a_big_result_comes_back_through_shared_memory(rc):
    engine = rc[rc.ids[0]]
    engine.push({"back": BIG}, block=True)
    ar = engine.pull("back", block=False)
    got = ar.get(timeout=60)
    reply = rc._replies[ar.msg_ids[0]]
    assert [e is not None for e in reply["header"]["shm"]] == [False, True]
    assert np.array_equal(got, BIG) and got.flags.writeable
    assert our_files() == [] and not list(shm.shm_dir().glob(f"{shm.BUFFER_PREFIX}*"))


def test_a_client_without_shared_memory_gets_results_in_frames(cluster):
    client = cluster.client(shm_threshold=0)
    try:
        engine = client[client.ids[0]]
        engine.push({"inline": BIG}, block=True)
        ar = engine.pull("inline", block=False)
        assert np.array_equal(ar.get(timeout=60), BIG)
        assert "shm" not in client._replies[ar.msg_ids[0]]["header"]
    finally:
        client.close()


def test_the_client_probe_lives_as_long_as_the_client(cluster):
    client = cluster.client()
    probe = shm.shm_dir() / f"{shm.CLIENT_PROBE_PREFIX}{client.session.session}"
    assert probe.exists()
    client.close()
    assert not probe.exists()


def test_a_result_whose_file_is_gone_becomes_an_error_reply():
    from ipcluster import wire
    from ipcluster.client.io import open_reply

    session = wire.Session(key=b"k" * 32)
    msg = session.msg("apply_reply", {"status": "ok"})
    frames = session.serialize(
        msg,
        [b"pickle", b""],
        digests=["0" * 64, "0" * 64],
        shm=[None, {"name": "ipcluster-buf-1-ab-1", "size": 10}],
    )
    reply = open_reply(session, [b"client", *frames])
    assert reply["content"]["ename"] == "SerializationError"
    assert "could not be read from shared memory" in reply["content"]["evalue"]
    assert reply["buffers"] == []


@pytest.fixture
def writes_capped_at_2mb():
    """Files this process writes stop at 2 MB (EFBIG), as when /dev/shm is full."""
    import resource
    import signal

    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, old_limit[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)


def test_a_full_shared_memory_directory_falls_back_to_the_sockets(cluster, writes_capped_at_2mb, caplog):
    client = cluster.client()
    try:
        client[:].push({"full": BIG}, block=True)
        assert set(client[:].apply_sync(where_is, Reference("full"))) == {"frame"}
        assert "shared memory unusable" in caplog.text
        assert our_files() == []
        assert not client._shm.wants([BIG])  # it rests before trying again
    finally:
        client.close()
