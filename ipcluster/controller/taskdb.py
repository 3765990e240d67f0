"""Task records: the in-memory DictDB (default, bounded) and SQLiteDB (``--db sqlite``).

A record is a small dict per task (see ``new_record``): the request (header, metadata, content and
buffers, so the task can be resubmitted), who submitted it, where it ran, and the result. Buffers are the
received zmq frames themselves (no copy). Request and result buffers are kept while the record is retained,
and the DictDB bounds their total size too (``retention_bytes``): past it, the records that took buffers
longest ago lose them, request buffers before any result's (and are marked ``buffers_dropped`` /
``result_buffers_dropped``), keeping the rest of the record. A completed
record's dict fields (headers, metadata, content) are kept as compact JSON bytes, ~1 KiB instead of ~5 KiB
a record; readers get them back as dicts.

Queries are Mongo-style, as in the seed: ``{"engine_uuid": "abc", "completed": {"$ne": None},
"msg_id": {"$in": [...]}}``; operators ``$in $nin $eq $ne $lt $lte $gt $gte``.
"""

from __future__ import annotations

import json
import logging
import pickle
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import zmq

log = logging.getLogger("ipcluster.controller")

RECORD_KEYS = (
    "msg_id",
    "header",
    "metadata",
    "content",
    "buffers",
    "submitted",
    "client_uuid",
    "engine_uuid",
    "started",
    "completed",
    "resubmitted",
    "result_header",
    "result_content",
    "result_metadata",
    "result_buffers",
    "queue",
    "stdout",
    "stderr",
    "error",
    "execute_result",
)

_OPS = {
    "$in": lambda a, b: a in b,
    "$nin": lambda a, b: a not in b,
    "$eq": lambda a, b: a == b,
    "$ne": lambda a, b: a != b,
    "$lt": lambda a, b: a is not None and a < b,
    "$lte": lambda a, b: a is not None and a <= b,
    "$gt": lambda a, b: a is not None and a > b,
    "$gte": lambda a, b: a is not None and a >= b,
}


def new_record(msg: dict[str, Any], client_uuid: str, queue: str) -> dict[str, Any]:
    """A record for a request just seen by a relay; the result fields are filled when the reply comes."""
    header = msg["header"]
    return {
        "msg_id": header["msg_id"],
        "header": header,
        "metadata": msg["metadata"],
        "content": msg["content"],
        "buffers": msg.get("buffers") or [],
        "submitted": header.get("date"),
        "client_uuid": client_uuid,
        "engine_uuid": None,
        "started": None,
        "completed": None,
        "resubmitted": None,
        "result_header": None,
        "result_content": None,
        "result_metadata": None,
        "result_buffers": None,
        "queue": queue,
        "stdout": "",
        "stderr": "",
        "error": None,
        "execute_result": None,
    }


def validate_query(query: Any) -> dict[str, Any]:
    """Raise ValueError with the allowed form unless ``query`` is a Mongo-style dict we understand."""
    if not isinstance(query, dict):
        raise ValueError("query must be a dict like {'completed': {'$ne': None}}")
    for key, cond in query.items():
        if isinstance(cond, dict):
            for op in cond:
                if op not in _OPS:
                    raise ValueError(
                        f"unknown query operator {op!r} for {key!r}; use one of {', '.join(_OPS)}"
                    )
    return query


def match(record: dict[str, Any], query: dict[str, Any]) -> bool:
    """True if ``record`` satisfies every condition of the Mongo-style ``query``."""
    for key, cond in query.items():
        value = record.get(key)
        if isinstance(cond, dict):
            for op, arg in cond.items():
                try:
                    if not _OPS[op](value, arg):
                        return False
                except TypeError:
                    return False
        elif value != cond:
            return False
    return True


# raw buffers never go into a db_reply (JSON): result_request returns result buffers
_NOT_PROJECTED = frozenset(("buffers", "buffers_dropped", "result_buffers", "result_buffers_dropped"))


def project(record: dict[str, Any], keys: Iterable[str] | None) -> dict[str, Any]:
    """The requested keys of a record (always with msg_id); all keys but the buffers by default."""
    if keys is None:
        return {k: v for k, v in record.items() if k not in _NOT_PROJECTED}
    out = {k: record.get(k) for k in keys if k not in _NOT_PROJECTED}
    out["msg_id"] = record["msg_id"]
    return out


# the dict fields a completed DictDB record keeps as JSON bytes
PACKED_KEYS = ("header", "metadata", "content", "result_header", "result_content", "result_metadata")
# result buffers below this size are copied out of their zmq frames (a Frame costs more than its bytes)
SMALL_BUFFER = 4096


class _Packed(bytes):
    """A record field stored as JSON (tells a packed field from a bytes value)."""

    __slots__ = ()


def _pack(record: dict[str, Any]) -> None:
    for key in PACKED_KEYS:
        value = record.get(key)
        if isinstance(value, dict):
            try:
                record[key] = _Packed(orjson.dumps(value))
            except TypeError:
                pass  # not JSON: keep the dict
    for key in ("buffers", "result_buffers"):
        buffers = record.get(key)
        if buffers:
            record[key] = [_compact(b) for b in buffers]


def _compact(buf: Any) -> Any:
    """A small received frame as bytes (cheaper to keep); bytes and big buffers as they are."""
    if type(buf) is bytes or _nbytes(buf) >= SMALL_BUFFER:
        return buf
    data = getattr(buf, "bytes", None)  # zmq.Frame: one copy
    return data if type(data) is bytes else bytes(buf)


def _unpacked(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its packed fields as dicts (a copy when any was packed)."""
    packed = [k for k in PACKED_KEYS if isinstance(record.get(k), _Packed)]
    if not packed:
        return record
    out = dict(record)
    for key in packed:
        out[key] = orjson.loads(memoryview(record[key]))
    return out


_LEN_IS_BYTES = (bytes, zmq.Frame, bytearray)


def _nbytes(buf: Any) -> int:
    """Bytes in a buffer: len() of bytes and zmq frames (the common, fast case), else memoryview's nbytes."""
    if type(buf) in _LEN_IS_BYTES:
        return len(buf)
    try:
        return memoryview(buf).nbytes
    except TypeError:
        return len(buf)


def _size(buffers: Any) -> int:
    return sum(map(_nbytes, buffers)) if buffers else 0


class BaseDB:
    """The interface the hub uses; every backend implements it."""

    def add_record(self, msg_id: str, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def get_record(self, msg_id: str) -> dict[str, Any]:
        """The record, or KeyError."""
        raise NotImplementedError

    def get(self, msg_id: str) -> dict[str, Any] | None:
        """The record, or None."""
        try:
            return self.get_record(msg_id)
        except KeyError:
            return None

    def update_record(self, msg_id: str, update: dict[str, Any]) -> None:
        raise NotImplementedError

    def find_records(self, query: dict[str, Any], keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        raise NotImplementedError

    def drop_matching_records(self, query: dict[str, Any]) -> int:
        raise NotImplementedError

    def drop_record(self, msg_id: str) -> None:
        raise NotImplementedError

    def get_history(self) -> list[str]:
        """Every msg_id held, in submission order."""
        raise NotImplementedError

    def flush(self) -> None:
        """Persist anything buffered (no-op for memory backends)."""

    def close(self) -> None:
        self.flush()


class DictDB(BaseDB):
    """In-memory records, bounded so memory stays flat however many tasks run.

    Once more than ``retention`` records are completed, the oldest completed ones are dropped (pending
    records are never dropped). The hub marks completion through ``update_record`` with ``completed``.
    Request and result buffers together are bounded by ``retention_bytes``.
    """

    def __init__(self, retention: int = 100_000, retention_bytes: int = 256 * 2**20) -> None:
        self.retention = retention
        self.retention_bytes = retention_bytes
        self._records: dict[str, dict[str, Any]] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        # records holding buffers → their bytes, oldest first: request buffers, and result buffers
        self._requests: OrderedDict[str, int] = OrderedDict()
        self._buffered: OrderedDict[str, int] = OrderedDict()
        self.buffer_bytes = 0

    def __len__(self) -> int:
        return len(self._records)

    def add_record(self, msg_id: str, record: dict[str, Any]) -> None:
        self._records[msg_id] = record
        if record.get("buffers"):
            self._hold(self._requests, msg_id, _size(record["buffers"]))
        if record.get("completed"):
            self._mark_done(msg_id)

    def get_record(self, msg_id: str) -> dict[str, Any]:
        return _unpacked(self._records[msg_id])

    def get(self, msg_id: str) -> dict[str, Any] | None:
        rec = self._records.get(msg_id)
        return None if rec is None else _unpacked(rec)

    def update_record(self, msg_id: str, update: dict[str, Any]) -> None:
        record = self._records[msg_id]
        record.update(update)
        if update.get("result_buffers"):
            self._hold(self._buffered, msg_id, _size(update["result_buffers"]))
        if update.get("completed"):
            _pack(self._records[msg_id])
            self._mark_done(msg_id)

    def _hold(self, store: OrderedDict[str, int], msg_id: str, size: int) -> None:
        """Count a record's new buffers; past ``retention_bytes`` drop the oldest request buffers, then the
        oldest result buffers (results are worth more: other clients fetch them; requests only serve
        resubmit)."""
        self.buffer_bytes += size - store.pop(msg_id, 0)
        store[msg_id] = size
        while self.buffer_bytes > self.retention_bytes:
            if self._requests:
                old, old_size = self._requests.popitem(last=False)
                key = "buffers"
            elif self._buffered:
                old, old_size = self._buffered.popitem(last=False)
                key = "result_buffers"
            else:
                return
            self.buffer_bytes -= old_size
            rec = self._records.get(old)
            if rec is not None and rec.get(key):
                rec[key] = None
                rec[f"{key}_dropped"] = True

    def _forget_buffers(self, msg_id: str) -> None:
        self.buffer_bytes -= self._requests.pop(msg_id, 0) + self._buffered.pop(msg_id, 0)

    def _mark_done(self, msg_id: str) -> None:
        self._done[msg_id] = None
        while len(self._done) > self.retention:
            old, _ = self._done.popitem(last=False)
            self._records.pop(old, None)
            self._forget_buffers(old)

    def find_records(self, query: dict[str, Any], keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        keys = list(keys) if keys is not None else None
        return [project(_unpacked(r), keys) for r in self._matching(query)]

    def _matching(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        if any(k in PACKED_KEYS for k in query):
            return [r for r in self._records.values() if match(_unpacked(r), query)]
        return [r for r in self._records.values() if match(r, query)]

    def drop_matching_records(self, query: dict[str, Any]) -> int:
        doomed = [r["msg_id"] for r in self._matching(query)]
        for mid in doomed:
            self.drop_record(mid)
        return len(doomed)

    def drop_record(self, msg_id: str) -> None:
        self._records.pop(msg_id, None)
        self._done.pop(msg_id, None)
        self._forget_buffers(msg_id)

    def get_history(self) -> list[str]:
        return list(self._records)


_JSON_COLUMNS = (
    "header",
    "metadata",
    "content",
    "result_header",
    "result_content",
    "result_metadata",
    "error",
    "execute_result",
)
_BLOB_COLUMNS = ("buffers", "result_buffers")
_SCALAR_COLUMNS = tuple(k for k in RECORD_KEYS if k not in _JSON_COLUMNS and k not in _BLOB_COLUMNS)


class SQLiteDB(BaseDB):
    """Records in an SQLite file (``<profile>/log/tasks.db`` by default), kept across controller restarts.

    Writes are batched: ``flush()`` commits, and the controller calls it periodically, so the relay's hot
    path does not wait for the disk. Request and result buffers are stored as pickled lists of bytes. A
    file written by an older version gains the columns it lacks.
    Queries on scalar columns run in SQL; conditions on JSON columns are checked in Python.
    """

    def __init__(self, path: Path | str, table: str = "tasks") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.table = table
        self._conn = sqlite3.connect(str(self.path), isolation_level="DEFERRED")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        cols = ", ".join(
            f"{k} TEXT PRIMARY KEY" if k == "msg_id" else (f"{k} BLOB" if k in _BLOB_COLUMNS else f"{k} TEXT")
            for k in RECORD_KEYS
        )
        self._conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (seq INTEGER, {cols})")
        present = {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}
        for k in RECORD_KEYS:
            if k not in present:
                self._conn.execute(
                    f"ALTER TABLE {table} ADD COLUMN {k} {'BLOB' if k in _BLOB_COLUMNS else 'TEXT'}"
                )
        self._conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_seq ON {table}(seq)")
        row = self._conn.execute(f"SELECT MAX(seq) FROM {table}").fetchone()
        self._seq = (row[0] or 0) if row else 0
        self._dirty = False

    @staticmethod
    def _encode(key: str, value: Any) -> Any:
        if key in _BLOB_COLUMNS:
            return None if value is None else pickle.dumps([bytes(getattr(b, "bytes", b)) for b in value])
        if key in _JSON_COLUMNS:
            return None if value is None else json.dumps(value)
        return value

    @staticmethod
    def _decode(key: str, value: Any) -> Any:
        if value is None:
            return None
        if key in _BLOB_COLUMNS:
            return pickle.loads(value)
        if key in _JSON_COLUMNS:
            return json.loads(value)
        return value

    def add_record(self, msg_id: str, record: dict[str, Any]) -> None:
        self._seq += 1
        keys = [k for k in RECORD_KEYS if k in record]
        placeholders = ", ".join("?" for _ in keys)
        self._conn.execute(
            f"INSERT OR REPLACE INTO {self.table} (seq, {', '.join(keys)}) VALUES (?, {placeholders})",
            [self._seq, *(self._encode(k, record[k]) for k in keys)],
        )
        self._dirty = True

    def get_record(self, msg_id: str) -> dict[str, Any]:
        rows = self._select("WHERE msg_id = ?", [msg_id], None)
        if not rows:
            raise KeyError(msg_id)
        return rows[0]

    def update_record(self, msg_id: str, update: dict[str, Any]) -> None:
        keys = [k for k in update if k in RECORD_KEYS and k != "msg_id"]
        if not keys:
            return
        sets = ", ".join(f"{k} = ?" for k in keys)
        self._conn.execute(
            f"UPDATE {self.table} SET {sets} WHERE msg_id = ?",
            [*(self._encode(k, update[k]) for k in keys), msg_id],
        )
        self._dirty = True

    def _where(self, query: dict[str, Any]) -> tuple[str, list[Any], dict[str, Any]]:
        """SQL for the scalar-column conditions; the rest is returned to check in Python."""
        sql_ops = {"$eq": "=", "$lt": "<", "$lte": "<=", "$gt": ">", "$gte": ">="}
        clauses: list[str] = []
        args: list[Any] = []
        rest: dict[str, Any] = {}
        for key, cond in query.items():
            if key not in _SCALAR_COLUMNS:
                rest[key] = cond
                continue
            conds = cond if isinstance(cond, dict) else {"$eq": cond}
            for op, arg in conds.items():
                if op in ("$eq", "$ne") and arg is None:
                    clauses.append(f"{key} IS {'NOT ' if op == '$ne' else ''}NULL")
                elif op in sql_ops:
                    clauses.append(f"{key} {sql_ops[op]} ?")
                    args.append(arg)
                elif op == "$ne":
                    clauses.append(f"({key} IS NULL OR {key} != ?)")
                    args.append(arg)
                elif op in ("$in", "$nin"):
                    values = list(arg)
                    marks = ", ".join("?" for _ in values) or "NULL"
                    clauses.append(f"{key} {'NOT ' if op == '$nin' else ''}IN ({marks})")
                    args.extend(values)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return where, args, rest

    def _select(self, where: str, args: list[Any], keys: list[str] | None) -> list[dict[str, Any]]:
        cur = self._conn.execute(
            f"SELECT {', '.join(RECORD_KEYS)} FROM {self.table} {where} ORDER BY seq", args
        )
        return [{k: self._decode(k, v) for k, v in zip(RECORD_KEYS, row, strict=True)} for row in cur]

    def find_records(self, query: dict[str, Any], keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
        where, args, rest = self._where(query)
        keys = list(keys) if keys is not None else None
        return [project(r, keys) for r in self._select(where, args, keys) if match(r, rest)]

    def drop_matching_records(self, query: dict[str, Any]) -> int:
        doomed = [r["msg_id"] for r in self.find_records(query, ["msg_id"])]
        for mid in doomed:
            self.drop_record(mid)
        return len(doomed)

    def drop_record(self, msg_id: str) -> None:
        self._conn.execute(f"DELETE FROM {self.table} WHERE msg_id = ?", [msg_id])
        self._dirty = True

    def get_history(self) -> list[str]:
        return [row[0] for row in self._conn.execute(f"SELECT msg_id FROM {self.table} ORDER BY seq")]

    def flush(self) -> None:
        if self._dirty:
            self._conn.commit()
            self._dirty = False

    def close(self) -> None:
        self.flush()
        self._conn.close()
