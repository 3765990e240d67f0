"""Registration, heartbeats, connection and notifications against a real ipcontroller process."""

from __future__ import annotations

import stat

from cluster_helpers import wait_for
from controller_peers import nothing_within, recv_msg


def test_connection_files_are_0600_with_full_schema(cluster):
    import json

    client = json.loads(cluster.proc.client_file.read_text())
    engine = json.loads(cluster.proc.engine_file.read_text())
    for path in (cluster.proc.client_file, cluster.proc.engine_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    common = {
        "version",
        "key",
        "signature_scheme",
        "transport",
        "interface",
        "location",
        "ssh",
        "registration",
    }
    common |= {
        "mux",
        "task",
        "control",
        "iopub",
        "task_scheme",
        "url",
        "cluster_id",
        "controller_pid",
        "hb_period",
    }
    assert common <= client.keys() and common <= engine.keys()
    assert "notification" in client and "notification" not in engine
    assert {"hb_ping", "hb_pong", "hb_misses"} <= engine.keys()
    assert client["version"] == 1 and client["key"] == engine["key"] and len(client["key"]) == 64
    assert client["signature_scheme"] == "hmac-sha256"
    assert client["registration"] == engine["registration"]
    assert client["mux"] != engine["mux"]  # client-facing and engine-facing sockets differ
    assert client["url"] == f"tcp://127.0.0.1:{client['registration']}"
    assert engine["hb_period"] == 200 and engine["hb_misses"] == 3
    assert client["controller_pid"] == cluster.proc.pid


def test_engine_registers_on_first_pong_and_is_announced(cluster):
    client = cluster.client()
    eng = cluster.engine(register=False)
    reply = eng.request_registration()
    assert reply["msg_type"] == "registration_reply"
    assert reply["content"]["status"] == "ok" and reply["content"]["hb_period"] == 200
    assert reply["content"]["hb_misses"] == 3
    assert client.query("connection_request")["content"]["engines"] == {}  # not yet: no pong
    eng.id = reply["content"]["id"]
    eng.heart.start()
    _, note = recv_msg(client.notification, client.session)
    assert note["msg_type"] == "registration_notification"
    assert note["content"] == {"id": eng.id, "uuid": eng.uuid}
    conn = client.query("connection_request")["content"]
    assert conn["status"] == "ok" and conn["engines"] == {str(eng.id): eng.uuid}
    assert conn["task_scheme"] == "leastload" and conn["hb_period"] == 200


def test_ids_come_from_a_counter_never_reused(cluster):
    client = cluster.client()
    a = cluster.engine()
    b = cluster.engine()
    assert (a.id, b.id) == (0, 1)
    wait_for(lambda: len(client.query("connection_request")["content"]["engines"]) == 2, what="2 engines")
    assert client.query("unregistration_request", {"id": a.id})["content"]["status"] == "ok"
    assert client.query("unregistration_request", {"id": a.id})["content"]["ename"] == "IndexError"
    c = cluster.engine()  # id 0 is free again, but ids are never reused
    assert c.id == 2


def test_unregistration_request_removes_engine_and_notifies(cluster):
    client = cluster.client()
    eng = cluster.engine()
    _, note = recv_msg(client.notification, client.session)
    assert note["msg_type"] == "registration_notification"
    eng.session.send(eng.registration, "unregistration_request", {"id": eng.id})
    _, reply = recv_msg(eng.registration, eng.session)
    assert reply["msg_type"] == "unregistration_reply" and reply["content"]["status"] == "ok"
    _, note = recv_msg(client.notification, client.session)
    assert note["msg_type"] == "unregistration_notification"
    assert note["content"] == {"id": eng.id, "uuid": eng.uuid}
    assert client.query("connection_request")["content"]["engines"] == {}


def test_engine_that_stops_beating_fails_and_is_unregistered(cluster):
    client = cluster.client()
    eng = cluster.engine()
    recv_msg(client.notification, client.session)
    eng.stop_beating()
    _, note = recv_msg(client.notification, client.session, timeout_ms=5000)
    assert note["msg_type"] == "unregistration_notification" and note["content"]["id"] == eng.id


def test_reregistration_with_same_uuid_gets_old_id_back(cluster):
    client = cluster.client()
    eng = cluster.engine()
    old = eng.id
    cluster.engine()  # another engine takes the next id meanwhile
    eng.stop_beating()
    wait_for(lambda: str(old) not in client.query("connection_request")["content"]["engines"], what="failure")
    eng.heart.beating.set()
    assert eng.register(eid=old) == old
    wait_for(
        lambda: client.query("connection_request")["content"]["engines"].get(str(old)) == eng.uuid,
        what="back",
    )


def test_registration_without_heartbeat_is_never_completed(cluster):
    client = cluster.client()
    eng = cluster.engine(register=False, beat=False)
    eng.register()
    assert nothing_within(client.notification, 600)
    assert client.query("connection_request")["content"]["engines"] == {}


def test_pong_with_bad_mac_does_not_register(cluster):
    client = cluster.client()
    eng = cluster.engine(register=False)
    eng.heart.bad_mac = True
    eng.register()
    assert nothing_within(client.notification, 600)
    assert "bad mac" in cluster.proc.stderr_path.read_text()


def test_wrong_key_gets_unsigned_auth_error_notice(cluster):
    from ipcluster import wire

    eng = cluster.engine(register=False, key="0" * 64)
    eng.session.send(eng.registration, "registration_request", {"uuid": eng.uuid, "id": None})
    assert eng.registration.poll(5000)
    frames = eng.registration.recv_multipart()
    _, rest = wire.feed_identities(frames)
    assert wire.is_auth_error(rest)
    # at most one notice per second per peer
    eng.session.send(eng.registration, "registration_request", {"uuid": eng.uuid, "id": None})
    assert nothing_within(eng.registration, 300)
    client = cluster.client(key="1" * 64)
    client.session.send(client.query_sock, "connection_request", {})
    assert client.query_sock.poll(5000)
    _, rest = wire.feed_identities(client.query_sock.recv_multipart())
    assert "keys differ" in wire.is_auth_error(rest)


def test_unknown_query_gets_value_error(cluster):
    client = cluster.client()
    reply = client.query("frobnicate_request")
    assert reply["msg_type"] == "frobnicate_reply"
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "ValueError"


def test_restarted_controller_keeps_an_engines_id_if_free(cluster):
    eng = cluster.engine(register=False)
    assert eng.register(eid=7) == 7  # an engine rejoining a controller restarted with --reuse
    cluster.wait_registered(eng)
    other = cluster.engine()
    assert other.id == 8  # the counter moved past it: ids are still never reused
    third = cluster.engine(register=False)
    assert third.register(eid=7) == 9  # taken by another uuid: a fresh id
