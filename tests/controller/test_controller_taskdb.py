"""Task DB backends and dependency logic (pure units), plus the retention limit on a live controller."""

from __future__ import annotations

import pytest

from ipcluster.controller.dependency import Dependency
from ipcluster.controller.taskdb import DictDB, SQLiteDB, match, validate_query


def _rec(i: int, done: bool, engine: str = "e1") -> dict:
    return {
        "msg_id": f"m{i}",
        "header": {"msg_id": f"m{i}"},
        "engine_uuid": engine,
        "completed": "2026-01-01T00:00:00+00:00" if done else None,
        "result_buffers": [b"buf"],
    }


def test_dictdb_culls_oldest_completed_but_never_pending():
    db = DictDB(retention=10)
    db.add_record("p", _rec(-1, False))
    for i in range(100):
        db.add_record(f"m{i}", _rec(i, False))
        db.update_record(f"m{i}", {"completed": "now"})
    assert len(db) == 11
    assert db.get_history() == ["p", *[f"m{i}" for i in range(90, 100)]]


@pytest.mark.parametrize("backend", ["dict", "sqlite"])
def test_queries_and_drops(backend, tmp_path):
    db = DictDB() if backend == "dict" else SQLiteDB(tmp_path / "t.db")
    for i in range(5):
        db.add_record(f"m{i}", _rec(i, i < 3, "a" if i % 2 else "b"))
    assert [r["msg_id"] for r in db.find_records({"completed": {"$ne": None}}, ["msg_id"])] == [
        "m0",
        "m1",
        "m2",
    ]
    assert [r["msg_id"] for r in db.find_records({"engine_uuid": "a"}, ["msg_id"])] == ["m1", "m3"]
    assert [r["msg_id"] for r in db.find_records({"msg_id": {"$in": ["m4", "m0"]}}, ["msg_id"])] == [
        "m0",
        "m4",
    ]
    assert "result_buffers" not in db.find_records({}, None)[0]
    assert db.get_record("m0")["header"] == {"msg_id": "m0"}
    assert [bytes(b) for b in db.get_record("m0")["result_buffers"]] == [b"buf"]
    assert db.drop_matching_records({"completed": {"$ne": None}}) == 3
    assert db.get_history() == ["m3", "m4"]
    with pytest.raises(KeyError):
        db.get_record("m0")
    db.close()


def test_query_validation():
    assert match({"a": 1}, {"a": {"$gt": 0, "$lt": 2}})
    assert not match({"a": None}, {"a": {"$gt": 0}})
    with pytest.raises(ValueError, match=r"\$regex"):
        validate_query({"a": {"$regex": "x"}})


def test_dependency_semantics():
    dep = Dependency(["a", "b"])
    assert not dep.check({"a"}, set()) and dep.check({"a", "b"}, set())
    assert dep.unreachable({"a"}, {"b"})
    anyof = Dependency.from_wire({"dependencies": ["a", "b"], "all": False})
    assert (
        anyof.check({"b"}, set())
        and not anyof.unreachable(set(), {"a"})
        and anyof.unreachable(set(), {"a", "b"})
    )
    failure_ok = Dependency.from_wire({"dependencies": ["a"], "success": False, "failure": True})
    assert failure_ok.check(set(), {"a"}) and failure_ok.unreachable({"a"}, set())
    with pytest.raises(ValueError):
        Dependency.from_wire([1, 2])


def test_memory_stays_bounded_with_task_retention(start_cluster):
    cluster = start_cluster("--task-retention", "50")
    eng = cluster.engine()
    client = cluster.client()
    for _ in range(300):
        client.apply("task")
        idents, got = eng.recv("task")
        eng.reply("task", idents, got)
        client.recv("task")
    history = client.query("history_request")["content"]["history"]
    assert len(history) == 50
    assert client.query("queue_request")["content"][str(eng.id)]["completed"] == 300


@pytest.mark.parametrize("backend", ["dict", "sqlite"])
def test_request_buffers_are_kept_for_resubmit_but_never_returned_by_queries(backend, tmp_path):
    db = DictDB() if backend == "dict" else SQLiteDB(tmp_path / "t.db")
    db.add_record("m0", {**_rec(0, False), "buffers": [b"f", b"args"], "result_buffers": None})
    db.update_record("m0", {"completed": "2026-01-01T00:00:00+00:00", "result_buffers": [b"r"]})
    assert [bytes(b) for b in db.get_record("m0")["buffers"]] == [b"f", b"args"]
    (record,) = db.find_records({}, None)
    assert "buffers" not in record and "result_buffers" not in record
    assert db.find_records({}, ["buffers", "msg_id"]) == [{"msg_id": "m0"}]
    db.close()


def test_request_buffers_are_dropped_before_results_past_the_byte_limit():
    db = DictDB(retention_bytes=250)
    for i in range(3):
        db.add_record(f"m{i}", {**_rec(i, False), "buffers": [b"q" * 50], "result_buffers": None})
        db.update_record(f"m{i}", {"completed": "now", "result_buffers": [b"r" * 60]})
    # 3 x 50 request bytes + 3 x 60 result bytes > 250: the two oldest requests go, every result stays
    assert [db.get(f"m{i}").get("buffers_dropped", False) for i in range(3)] == [True, True, False]
    assert all(db.get(f"m{i}")["result_buffers"] == [b"r" * 60] for i in range(3))
    assert db.buffer_bytes == 50 + 180
    db.drop_record("m2")
    assert db.buffer_bytes == 120


def test_sqlite_file_of_an_older_version_gains_the_new_columns(tmp_path):
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE tasks (seq INTEGER, msg_id TEXT PRIMARY KEY, header TEXT, completed TEXT)")
    conn.execute("INSERT INTO tasks VALUES (1, 'old', '{\"msg_id\": \"old\"}', 'then')")
    conn.commit()
    conn.close()
    db = SQLiteDB(path)
    assert db.get_record("old")["buffers"] is None and db.get_record("old")["header"] == {"msg_id": "old"}
    db.add_record("new", {**_rec(1, False), "msg_id": "new", "buffers": [b"x"]})
    assert [bytes(b) for b in db.get_record("new")["buffers"]] == [b"x"]
    db.close()
