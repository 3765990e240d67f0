"""Bad input on every controller socket is dropped and logged; the controller keeps serving."""

from __future__ import annotations

import orjson
import pytest
import zmq
from cluster_helpers import wait_for
from controller_peers import nothing_within

from ipcluster import wire
from ipcluster.profiles import url_for


def bad_variants(session: wire.Session, msg_type: str = "apply_request") -> dict[str, list[bytes]]:
    """Each kind of bad message, as the frames after any routing prefix."""
    good = session.serialize(session.msg(msg_type, {}))
    delim, sig, *parts = good
    nonjson = [b"not json", b"{}", b"{}", b"{}"]
    return {
        "unsigned": [delim, b"", *parts],
        "bad_signature": [delim, b"0" * len(sig), *parts],
        "truncated": [delim, sig, parts[0]],
        "garbage": [b"\xff\xfe\x00", b"garbage"],
        "no_delimiter": [sig, *parts],
        "signed_non_json": [delim, session.signer.sign(nonjson), *nonjson],
    }


def still_serves(cluster, eng, client):
    assert client.query("connection_request")["content"]["engines"][str(eng.id)] == eng.uuid
    req = client.apply("mux", eng.uuid)
    idents, got = eng.recv("mux")
    eng.reply("mux", idents, got)
    assert client.recv("mux")["parent_header"]["msg_id"] == req["msg_id"]
    assert cluster.proc.poll() is None


@pytest.mark.parametrize("side", ["registration", "mux", "task", "control"])
def test_bad_client_messages_are_dropped(cluster, side):
    eng = cluster.engine()
    client = cluster.client()
    sock = client.sockets["query" if side == "registration" else side]
    prefix = [eng.ident] if side in ("mux", "control") else []
    for frames in bad_variants(client.session).values():
        sock.send_multipart([*prefix, *frames])
    assert nothing_within(sock, 300)
    assert nothing_within(eng.sockets[side], 10)
    still_serves(cluster, eng, client)
    log = cluster.proc.stderr_path.read_text()
    assert (
        f"dropped a message on {side}" in log
        or "dropped a task request" in log
        or "dropped a message on registration" in log
    )
    assert client.session.session in log  # the peer identity is named


@pytest.mark.parametrize("side", ["mux", "task", "control"])
def test_bad_engine_messages_are_dropped(cluster, side):
    eng = cluster.engine()
    client = cluster.client()
    for frames in bad_variants(eng.session, "apply_reply").values():
        eng.sockets[side].send_multipart([client.session.bsession, *frames])
    assert nothing_within(client.sockets[side], 300)
    still_serves(cluster, eng, client)
    assert eng.uuid in cluster.proc.stderr_path.read_text()


def test_replayed_messages_are_dropped(cluster):
    eng = cluster.engine()
    client = cluster.client()
    frames = client.session.serialize(client.session.msg("connection_request", {}))
    client.query_sock.send_multipart(frames)
    assert client.query_sock.poll(5000)
    client.query_sock.recv_multipart()
    client.query_sock.send_multipart(frames)
    assert nothing_within(client.query_sock, 300)
    mux = client.session.serialize(client.session.msg("apply_request", {}), idents=[eng.ident])
    client.mux.send_multipart(mux)
    eng.recv("mux")
    client.mux.send_multipart(mux)
    assert nothing_within(eng.mux, 300)
    assert "replayed" in cluster.proc.stderr_path.read_text()
    still_serves(cluster, eng, client)


def test_bad_iopub_and_pong_input_is_dropped(cluster):
    eng = cluster.engine()
    client = cluster.client()
    wait_for(lambda: client.query("connection_request"), what="client")
    for frames in bad_variants(eng.session, "stream").values():
        eng.iopub.send_multipart([b"engine.0.stream", *frames])
    assert nothing_within(client.iopub, 300)
    pong = eng.ctx.socket(zmq.DEALER)
    pong.linger = 0
    pong.setsockopt(zmq.IDENTITY, eng.ident + b"x")
    pong.connect(url_for(eng.info, "hb_pong"))
    pong.send_multipart([b"garbage"])
    pong.send_multipart([b"n" * 16, b"mac", b"extra"])
    pong.close()
    still_serves(cluster, eng, client)
    log = cluster.proc.stderr_path.read_text()
    assert "iopub" in log


def test_bad_query_content_gets_error_reply_not_crash(cluster):
    client = cluster.client()
    reply = client.query("result_request", {"msg_ids": [1, {"x": 2}]})
    assert reply["content"]["status"] == "error"
    reply = client.query("purge_request", {"msg_ids": 5})
    assert reply["content"]["status"] == "error"
    assert client.query("connection_request")["content"]["status"] == "ok"


def test_unsigned_cluster_no_secure(start_cluster):
    cluster = start_cluster("--no-secure")
    info = orjson.loads(cluster.proc.client_file.read_bytes())
    assert info["key"] == "" and info["signature_scheme"] == "none"
    eng = cluster.engine()
    client = cluster.client()
    still_serves(cluster, eng, client)


@pytest.mark.parametrize("channel", ["mux", "task"])
def test_signed_message_with_non_string_ids_is_dropped(cluster, channel):
    eng = cluster.engine()
    client = cluster.client()
    msg = client.session.msg("apply_request", {})
    msg["header"]["msg_id"] = ["not", "a", "string"]
    idents = [eng.ident] if channel == "mux" else []
    client.sockets[channel].send_multipart(client.session.serialize(msg, idents=idents))
    assert nothing_within(eng.sockets[channel], 300)
    req = client.apply(channel, eng.uuid if channel == "mux" else None)
    idents, got = eng.recv(channel)
    odd = eng.session.msg("apply_reply", {"status": "ok"}, parent={"msg_id": {"x": 1}})
    eng.sockets[channel].send_multipart(eng.session.serialize(odd, idents=idents))
    eng.reply(channel, idents, got)
    assert client.recv(channel)["parent_header"]["msg_id"] == req["msg_id"]
    assert "Traceback" not in cluster.proc.stderr_path.read_text()
