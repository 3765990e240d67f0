"""The signed frame layout: sign, verify, refuse tampering, replays and garbage."""

from __future__ import annotations

import pytest
import zmq

from ipcluster import wire
from ipcluster.error import InvalidSignature, MalformedMessage, ReplayedMessage


@pytest.fixture(params=["hmac-sha256", "blake3"])
def scheme(request: pytest.FixtureRequest) -> str:
    if request.param == "blake3" and not wire.blake3_available():
        pytest.skip("blake3 package not installed")
    return request.param


def make_pair(scheme: str) -> tuple[wire.Session, wire.Session]:
    return wire.Session(key=b"secret", signature_scheme=scheme), wire.Session(
        key=b"secret", signature_scheme=scheme
    )


def test_round_trip_over_real_sockets_keeps_identities_and_buffers(scheme: str) -> None:
    sender, receiver = make_pair(scheme)
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    try:
        port = router.bind_to_random_port("tcp://127.0.0.1")
        dealer.setsockopt(zmq.IDENTITY, b"peer-1")
        dealer.connect(f"tcp://127.0.0.1:{port}")
        sent = sender.send(dealer, "ping_request", {"x": 1}, metadata={"m": True}, buffers=[b"a" * 100, b"b"])
        assert router.poll(5000)
        idents, msg = receiver.recv(router)
    finally:
        dealer.close(0)
        router.close(0)
    assert idents == [b"peer-1"]
    assert msg["msg_id"] == sent["msg_id"]
    assert msg["content"] == {"x": 1}
    assert msg["metadata"] == {"m": True}
    assert [bytes(b) for b in msg["buffers"]] == [b"a" * 100, b"b"]
    header = msg["header"]
    for key in ("msg_id", "msg_type", "session", "date", "version"):
        assert key in header
    assert header["version"] == wire.PROTOCOL_VERSION


def test_tampered_content_is_refused(scheme: str) -> None:
    sender, receiver = make_pair(scheme)
    frames = sender.serialize(sender.msg("x", {"a": 1}))
    frames[5] = b'{"a":2}'
    with pytest.raises(InvalidSignature):
        receiver.deserialize(frames[1:])


def test_tampered_buffer_is_refused_by_the_endpoint_but_passes_a_relay(scheme: str) -> None:
    sender, receiver = make_pair(scheme)
    frames = sender.serialize(sender.msg("x"), buffers=[b"payload"])
    frames[-1] = b"PAYLOAD"
    relay = wire.Session(key=b"secret", signature_scheme=scheme)
    relay.deserialize(frames[1:], check_buffers=False)  # relays forward buffers untouched
    with pytest.raises(InvalidSignature, match="buffer 0"):
        receiver.deserialize(frames[1:])


def test_dropping_or_adding_a_buffer_is_refused(scheme: str) -> None:
    sender, receiver = make_pair(scheme)
    frames = sender.serialize(sender.msg("x"), buffers=[b"one"])
    with pytest.raises(InvalidSignature):
        receiver.deserialize(frames[1:] + [b"extra"], check_buffers=False)


def test_wrong_key_and_missing_signature_are_refused() -> None:
    sender = wire.Session(key=b"secret")
    frames = sender.serialize(sender.msg("x"))
    with pytest.raises(InvalidSignature):
        wire.Session(key=b"other").deserialize(frames[1:])
    frames[1] = b""
    with pytest.raises(InvalidSignature, match="unsigned"):
        wire.Session(key=b"secret").deserialize(frames[1:])


def test_replayed_message_is_refused_once_seen() -> None:
    sender, receiver = make_pair("hmac-sha256")
    frames = sender.serialize(sender.msg("x"))
    receiver.deserialize(frames[1:])
    with pytest.raises(ReplayedMessage):
        receiver.deserialize(frames[1:])


def test_replay_window_is_bounded() -> None:
    window = wire.ReplayWindow(size=3)
    for sig in (b"a", b"b", b"c", b"d"):
        assert window.check_and_add(sig)
    assert len(window) == 3
    assert not window.check_and_add(b"d")
    assert window.check_and_add(b"a")  # forgotten: outside the window


@pytest.mark.parametrize(
    "frames",
    [
        [b"garbage"],
        [b"sig", b"{}", b"{}", b"{}"],
        [b"sig", b"not json", b"{}", b"{}", b"{}"],
    ],
)
def test_garbage_is_malformed_or_unsigned(frames: list[bytes]) -> None:
    with pytest.raises((MalformedMessage, InvalidSignature)):
        wire.Session(key=b"secret").deserialize(frames)


def test_non_json_frames_with_a_valid_signature_are_malformed() -> None:
    sender = wire.Session(key=b"secret")
    parts = [b"not json", b"{}", b"{}", b"{}"]
    frames = [sender.signer.sign(parts), *parts]
    with pytest.raises(MalformedMessage):
        wire.Session(key=b"secret").deserialize(frames)


def test_feed_identities_requires_the_delimiter() -> None:
    assert wire.feed_identities([b"id1", b"id2", wire.DELIM, b"s"]) == ([b"id1", b"id2"], [b"s"])
    with pytest.raises(MalformedMessage):
        wire.feed_identities([b"id1", b"s"])


def test_unsigned_cluster_accepts_everything() -> None:
    sender = wire.Session(key=b"")
    frames = sender.serialize(sender.msg("x", {"a": 1}), buffers=[b"z"])
    msg = wire.Session(key=b"").deserialize(frames[1:])
    assert msg["content"] == {"a": 1}


def test_auth_error_notice_is_recognised() -> None:
    session = wire.Session(key=b"secret")
    frames = session.auth_error_frames([b"peer"], "wrong key")
    idents, rest = wire.feed_identities(frames)
    assert idents == [b"peer"]
    assert wire.is_auth_error(rest) == "wrong key"
    normal = session.serialize(session.msg("x"))
    assert wire.is_auth_error(normal[1:]) is None


def test_unknown_scheme_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown signature scheme 'md5'"):
        wire.Session(key=b"k", signature_scheme="md5")


def test_msg_ids_are_unique() -> None:
    session = wire.Session(key=b"k")
    ids = {session.msg("x")["msg_id"] for _ in range(1000)}
    assert len(ids) == 1000
    assert wire.Session(key=b"k").msg("x")["msg_id"] not in ids
