"""resubmit_request: finished tasks run again as new tasks through the scheduler, answered to the asker."""

from __future__ import annotations


def _finish(client, eng, channel="mux", buffers=(b"payload",), header=None, metadata=None):
    """Send one task, let the fake engine answer it; the request as sent."""
    if header is None:
        req = client.apply(
            channel, eng.uuid if channel == "mux" else None, metadata=metadata, buffers=buffers
        )
    else:
        idents = [eng.uuid.encode("ascii")]
        req = client.session.send(client.sockets[channel], "apply_request", {}, idents=idents, buffers=buffers,
                                  header=header)  # fmt: skip
    idents, got = eng.recv(channel)
    eng.reply(channel, idents, got, buffers=[b"result"])
    assert client.recv(channel)["parent_header"]["msg_id"] == req["msg_id"]
    return req


def test_resubmitted_direct_and_balanced_tasks_run_again_as_new_tasks(cluster):
    eng = cluster.engine()
    client = cluster.client()
    direct = _finish(client, eng, "mux", buffers=(b"one", b"two"))
    balanced = _finish(client, eng, "task", metadata={"retries": 1})
    reply = client.query("resubmit_request", {"msg_ids": [direct["msg_id"], balanced["msg_id"]]})["content"]
    assert reply["status"] == "ok"
    mapping = reply["resubmitted"]
    assert set(mapping) == {direct["msg_id"], balanced["msg_id"]}
    assert len(set(mapping.values())) == 2 and not set(mapping.values()) & set(mapping)
    for original in (direct, balanced):
        idents, again = eng.recv("task")  # signed by the controller: recv verifies it
        assert again["msg_id"] == mapping[original["msg_id"]]
        assert again["msg_type"] == "apply_request"
        assert [bytes(b) for b in again["buffers"]] == (
            [b"one", b"two"] if original is direct else [b"payload"]
        )
        if original is balanced:
            assert again["metadata"] == {"retries": 1}
        eng.reply("task", idents, again, buffers=[b"again"])
        answer = client.recv("task")  # the reply comes back to the client that asked
        assert answer["parent_header"]["msg_id"] == again["msg_id"]
        assert [bytes(b) for b in answer["buffers"]] == [b"again"]
    records = client.query(
        "db_request", {"query": {"msg_id": {"$in": list(mapping)}}, "keys": ["resubmitted"]}
    )
    assert {r["msg_id"]: r["resubmitted"] for r in records["content"]["records"]} == mapping
    done = client.query("result_request", {"msg_ids": list(mapping.values())})["content"]
    assert sorted(done["completed"]) == sorted(mapping.values())


def test_client_chosen_ids_and_metadata_overrides(cluster):
    first, second = cluster.engine(), cluster.engine()
    client = cluster.client()
    req = _finish(client, first)
    content = {"msg_ids": [req["msg_id"]], "new_msg_ids": ["again-1"], "metadata": {"targets": [second.id]}}
    reply = client.query("resubmit_request", content)["content"]
    assert reply == {"status": "ok", "resubmitted": {req["msg_id"]: "again-1"}}
    idents, again = second.recv("task")
    assert again["msg_id"] == "again-1" and again["metadata"] == {"targets": [second.id]}
    content["new_msg_ids"] = [req["msg_id"]]
    taken = client.query("resubmit_request", content)["content"]
    assert taken["status"] == "error" and "already in use" in taken["evalue"]


def test_unknown_inflight_and_shared_memory_tasks_are_refused(cluster):
    eng = cluster.engine()
    client = cluster.client()
    unknown = client.query("resubmit_request", {"msg_ids": ["no-such-task"]})["content"]
    assert unknown["status"] == "error" and unknown["ename"] == "KeyError"
    assert "no-such-task" in unknown["evalue"]
    pending = client.apply("mux", eng.uuid)
    eng.recv("mux")
    inflight = client.query("resubmit_request", {"msg_ids": [pending["msg_id"]]})["content"]
    assert inflight["status"] == "error" and inflight["ename"] == "ValueError"
    assert f"Task {pending['msg_id']} appears to be inflight" in inflight["evalue"]
    header = client.session.msg_header(
        "apply_request", shm=[None, {"name": "ipcluster-buf-1-ab-0", "size": 3}]
    )
    shared = _finish(client, eng, buffers=(b"f", b""), header=header)
    refused = client.query("resubmit_request", {"msg_ids": [shared["msg_id"]]})["content"]
    assert refused["status"] == "error" and "shared memory and are gone; submit it again" in refused["evalue"]
    bad = client.query("resubmit_request", {"msg_ids": []})["content"]
    assert bad["status"] == "error" and "msg_ids" in bad["evalue"]


def test_request_whose_buffers_were_dropped_is_refused_with_the_option(start_cluster):
    cluster = start_cluster("--task-retention-bytes", "10")
    eng = cluster.engine()
    client = cluster.client()
    req = _finish(client, eng, buffers=(b"x" * 100,))
    reply = client.query("resubmit_request", {"msg_ids": [req["msg_id"]]})["content"]
    assert reply["status"] == "error" and "--task-retention-bytes" in reply["evalue"]
