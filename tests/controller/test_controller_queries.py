"""Hub queries: queue_status, result, history, purge, db, shutdown."""

from __future__ import annotations

from cluster_helpers import wait_for
from controller_peers import recv_msg


def _run_direct(client, eng, n=1, reply=True):
    sent = []
    for _ in range(n):
        req = client.apply("mux", eng.uuid)
        idents, got = eng.recv("mux")
        if reply:
            eng.reply("mux", idents, got, buffers=[b"out", b"two"])
            client.recv("mux")
        sent.append(req)
    return sent


def test_queue_request_counts_and_lists(cluster):
    eng = cluster.engine()
    client = cluster.client()
    done = _run_direct(client, eng, 2)
    pending = _run_direct(client, eng, 1, reply=False)
    q = client.query("queue_request", {"targets": None})["content"]
    assert q["status"] == "ok" and q[str(eng.id)] == {"queue": 1, "completed": 2, "tasks": 0}
    assert q["unassigned"] == 0
    v = client.query("queue_request", {"targets": [eng.id], "verbose": True})["content"]
    assert v[str(eng.id)]["queue"] == [pending[0]["msg_id"]]
    assert v[str(eng.id)]["completed"] == [r["msg_id"] for r in done]
    bad = client.query("queue_request", {"targets": [42]})["content"]
    assert bad["status"] == "error" and bad["ename"] == "IndexError"


def test_result_request_returns_results_with_buffers(cluster):
    eng = cluster.engine()
    client = cluster.client()
    done = _run_direct(client, eng, 1)[0]
    pending = _run_direct(client, eng, 1, reply=False)[0]
    reply = client.query("result_request", {"msg_ids": [done["msg_id"], pending["msg_id"]]})
    content = reply["content"]
    assert content["completed"] == [done["msg_id"]] and content["pending"] == [pending["msg_id"]]
    rec = content[done["msg_id"]]
    assert rec["buffer_count"] == 2 and rec["result_content"]["status"] == "ok"
    assert rec["header"]["msg_id"] == done["msg_id"]
    assert [bytes(b) for b in reply["buffers"]] == [b"out", b"two"]
    only = client.query("result_request", {"msg_ids": [done["msg_id"]], "status_only": True})
    assert done["msg_id"] not in only["content"] and only["buffers"] == []
    missing = client.query("result_request", {"msg_ids": ["nope"]})["content"]
    assert missing["status"] == "error" and missing["ename"] == "KeyError"


def test_history_and_purge(cluster):
    eng = cluster.engine()
    client = cluster.client()
    done = _run_direct(client, eng, 3)
    pending = _run_direct(client, eng, 1, reply=False)[0]
    ids = [r["msg_id"] for r in done] + [pending["msg_id"]]
    assert client.query("history_request")["content"]["history"] == ids
    refused = client.query("purge_request", {"msg_ids": [pending["msg_id"]]})["content"]
    assert refused["status"] == "error" and pending["msg_id"] in refused["evalue"]
    assert client.query("purge_request", {"msg_ids": [done[0]["msg_id"]]})["content"]["status"] == "ok"
    assert client.query("history_request")["content"]["history"] == ids[1:]
    assert client.query("purge_request", {"msg_ids": "all"})["content"]["status"] == "ok"
    assert client.query("history_request")["content"]["history"] == [pending["msg_id"]]


def test_purge_by_engine_id(cluster):
    a, b = cluster.engine(), cluster.engine()
    client = cluster.client()
    ra = _run_direct(client, a, 2)
    rb = _run_direct(client, b, 1)
    assert client.query("purge_request", {"engine_ids": [a.id]})["content"]["status"] == "ok"
    assert client.query("history_request")["content"]["history"] == [rb[0]["msg_id"]]
    assert ra


def test_db_request_mongo_style(cluster):
    a, b = cluster.engine(), cluster.engine()
    client = cluster.client()
    _run_direct(client, a, 2)
    rb = _run_direct(client, b, 1)
    reply = client.query("db_request", {"query": {"engine_uuid": b.uuid}, "keys": ["msg_id", "completed"]})
    recs = reply["content"]["records"]
    assert [r["msg_id"] for r in recs] == [rb[0]["msg_id"]] and recs[0]["completed"]
    q = {"engine_uuid": {"$in": [a.uuid, b.uuid]}, "completed": {"$ne": None}}
    assert len(client.query("db_request", {"query": q, "keys": ["msg_id"]})["content"]["records"]) == 3
    bad = client.query("db_request", {"query": {"x": {"$regex": "y"}}})["content"]
    assert bad["status"] == "error" and "$regex" in bad["evalue"]


def test_shutdown_request_notifies_and_exits_cleanly(cluster):
    client = cluster.client()
    wait_for(lambda: client.query("connection_request"), what="client connected")
    reply = client.query("shutdown_request")
    assert reply["msg_type"] == "shutdown_reply" and reply["content"]["status"] == "ok"
    _, note = recv_msg(client.notification, client.session)
    assert note["msg_type"] == "shutdown_notification"
    assert cluster.proc.wait(10) == 0
    assert not cluster.proc.client_file.exists() and not cluster.proc.engine_file.exists()
