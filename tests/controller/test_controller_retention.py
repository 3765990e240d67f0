"""The controller's task records stay small: completed records are packed, result buffers are bounded by
--task-retention-bytes, and a result whose buffers were dropped is refused with a clear error."""

from __future__ import annotations

import sys

from ipcluster.controller.taskdb import DictDB, new_record


def _request(i: int) -> dict:
    header = {"msg_id": f"m{i}", "msg_type": "apply_request", "session": "s" * 32, "username": "u",
              "date": "2026-01-01T00:00:00+00:00", "version": "1.0", "buffers": []}  # fmt: skip
    return {"header": header, "metadata": {}, "content": {}}


def _complete(db: DictDB, i: int, buffers: list) -> None:
    md = {"engine_id": 0, "engine_uuid": "e" * 32, "status": "ok", "started": "2026-01-01T00:00:00+00:00",
          "completed": "2026-01-01T00:00:01+00:00", "dependencies_met": True}  # fmt: skip
    db.update_record(f"m{i}", {
        "result_header": {**_request(i)["header"], "msg_type": "apply_reply"},
        "result_content": {"status": "ok"}, "result_metadata": md, "result_buffers": buffers,
        "completed": md["completed"],
    })  # fmt: skip


def _deep(o, seen=None) -> int:
    seen = set() if seen is None else seen
    if id(o) in seen:
        return 0
    seen.add(id(o))
    size = sys.getsizeof(o)
    if isinstance(o, dict):
        size += sum(_deep(v, seen) for v in o.values())  # the keys are shared by every record
    elif isinstance(o, (list, tuple)):
        size += sum(_deep(v, seen) for v in o)
    return size


def test_completed_records_are_packed_small_and_read_back_as_dicts():
    db = DictDB()
    db.add_record("m0", new_record(_request(0), "client", "task"))
    _complete(db, 0, [b"result"])
    stored = db._records["m0"]
    assert _deep(stored) < 2000, _deep(stored)  # ~4 KiB as plain dicts
    rec = db.get("m0")
    assert rec["header"]["msg_id"] == "m0" and rec["result_metadata"]["engine_id"] == 0
    assert rec["result_content"] == {"status": "ok"} and rec["result_buffers"] == [b"result"]
    assert db.find_records({"result_content": {"$eq": {"status": "ok"}}}, ["msg_id"]) == [{"msg_id": "m0"}]
    assert (
        db.find_records({"completed": {"$ne": None}}, ["header"])[0]["header"]["msg_type"] == "apply_request"
    )


def test_result_buffers_are_bounded_by_bytes_oldest_dropped_first():
    db = DictDB(retention=1000, retention_bytes=2500)
    for i in range(5):
        db.add_record(f"m{i}", new_record(_request(i), "client", "task"))
        _complete(db, i, [b"x" * 1000])
    assert db.buffer_bytes <= 2500
    assert [db.get(f"m{i}").get("result_buffers_dropped", False) for i in range(5)] == [True] * 3 + [
        False
    ] * 2
    assert db.get("m4")["result_buffers"] == [b"x" * 1000]
    assert db.get("m0")["result_content"] == {"status": "ok"}  # the rest of the record stays
    db.drop_record("m4")
    assert db.buffer_bytes == 1000


def test_result_request_for_dropped_buffers_names_the_option(start_cluster):
    cluster = start_cluster("--task-retention-bytes", "10")
    eng = cluster.engine()
    client = cluster.client()
    sent = []
    for _ in range(2):
        req = client.apply("mux", eng.uuid)
        idents, got = eng.recv("mux")
        eng.reply("mux", idents, got, buffers=[b"0123456789"])
        client.recv("mux")
        sent.append(req["msg_id"])
    old = client.query("result_request", {"msg_ids": [sent[0]]})["content"]
    assert old["status"] == "error" and "--task-retention-bytes" in old["evalue"]
    new = client.query("result_request", {"msg_ids": [sent[1]]})
    assert new["content"]["status"] == "ok" and [bytes(b) for b in new["buffers"]] == [b"0123456789"]
