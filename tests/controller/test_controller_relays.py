"""The mux, control and iopub relays, and EngineError replies, against a real ipcontroller."""

from __future__ import annotations

from controller_peers import nothing_within, recv_msg

from ipcluster import wire


def test_mux_round_trip_swaps_identities_and_keeps_buffers(cluster):
    eng = cluster.engine()
    client = cluster.client()
    big = bytes(range(256)) * 4096
    req = client.apply("mux", eng.uuid, buffers=[b"f", big])
    idents, got = eng.recv("mux")
    assert idents == [client.session.bsession]
    assert got["msg_id"] == req["msg_id"] and [bytes(b) for b in got["buffers"]] == [b"f", big]
    eng.session.check_buffers(got["header"], got["buffers"])  # forwarded untouched: digests still match
    eng.reply("mux", idents, got, buffers=[b"result"])
    reply = client.recv("mux")
    assert reply["msg_type"] == "apply_reply" and reply["parent_header"]["msg_id"] == req["msg_id"]
    assert [bytes(b) for b in reply["buffers"]] == [b"result"]


def test_control_round_trip(cluster):
    eng = cluster.engine()
    client = cluster.client()
    req = client.session.send(client.control, "abort_request", {"msg_ids": None}, idents=[eng.ident])
    idents, got = eng.recv("control")
    assert got["msg_type"] == "abort_request"
    eng.reply("control", idents, got)
    reply = client.recv("control")
    assert reply["msg_type"] == "abort_reply" and reply["parent_header"]["msg_id"] == req["msg_id"]


def test_request_to_unknown_engine_gets_engine_error(cluster):
    client = cluster.client()
    req = client.apply("mux", "nosuchengine")
    reply = client.recv("mux")
    assert reply["parent_header"]["msg_id"] == req["msg_id"]
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "EngineError"


def test_engine_death_fails_inflight_direct_and_control_with_engine_error(cluster):
    eng = cluster.engine()
    client = cluster.client()
    req = client.apply("mux", eng.uuid)
    ctl = client.session.send(client.control, "clear_request", {}, idents=[eng.ident])
    eng.recv("mux")
    eng.recv("control")
    eng.stop_beating()
    reply = client.recv("mux", timeout_ms=5000)
    assert reply["msg_type"] == "apply_reply" and reply["parent_header"] == req["header"]
    content = reply["content"]
    assert (
        content["ename"] == "EngineError"
        and str(eng.id) in content["evalue"]
        and req["msg_id"] in content["evalue"]
    )
    creply = client.recv("control")
    assert creply["msg_type"] == "clear_reply" and creply["content"]["ename"] == "EngineError"
    assert creply["parent_header"]["msg_id"] == ctl["msg_id"]
    _, note = recv_msg(client.notification, client.session)
    assert note["msg_type"] == "unregistration_notification"
    result = client.query("result_request", {"msg_ids": [req["msg_id"]]})["content"]
    assert result["completed"] == [req["msg_id"]]
    assert result[req["msg_id"]]["result_content"]["ename"] == "EngineError"


def test_late_reply_from_failed_engine_is_dropped(cluster):
    eng = cluster.engine()
    client = cluster.client()
    req = client.apply("mux", eng.uuid)
    idents, got = eng.recv("mux")
    eng.stop_beating()
    assert client.recv("mux", timeout_ms=5000)["content"]["ename"] == "EngineError"
    eng.reply("mux", idents, got)
    assert nothing_within(client.mux, 300)
    assert req


def test_iopub_is_verified_republished_and_recorded(cluster):
    eng = cluster.engine()
    client = cluster.client()
    req = client.apply("mux", eng.uuid)
    idents, got = eng.recv("mux")
    # a SUB may miss the first messages while it connects: publish until one arrives
    for _ in range(50):
        eng.publish("stream", {"name": "stdout", "text": "hello\n"}, got)
        if client.iopub.poll(100):
            break
    frames = client.iopub.recv_multipart()
    assert frames[0] == f"engine.{eng.id}.stream".encode()
    msg = client.session.deserialize(wire.feed_identities(frames)[1])
    assert msg["content"]["text"] == "hello\n" and msg["parent_header"]["msg_id"] == req["msg_id"]
    eng.reply("mux", idents, got)
    client.recv("mux")
    rec = client.query("result_request", {"msg_ids": [req["msg_id"]]})["content"][req["msg_id"]]
    assert rec["stdout"].startswith("hello\n")
