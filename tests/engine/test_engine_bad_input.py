"""Bad input on the engine's sockets is dropped and logged; the engine keeps serving."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from ipcluster import wire

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def echo(x):
    return x


def still_serving(ctl, channel="mux"):
    ctl.apply(echo, "alive", channel=channel)
    reply = ctl.reply(channel)
    assert wire.deserialize_object(reply["buffers"]) == "alive"


def apply_frames(ctl, session):
    msg = session.msg("apply_request", {})
    return session.serialize(
        msg, wire.pack_apply_message(echo, ("bad",), {}), [ctl.engine_uuid, b"test-client"]
    )


def unsigned(ctl):
    frames = apply_frames(ctl, ctl.session)
    frames[3] = b""  # the signature frame after [engine, client, DELIM]
    return [frames]


def wrong_key(ctl):
    return [apply_frames(ctl, wire.Session("not the key"))]


def tampered_header(ctl):
    frames = apply_frames(ctl, ctl.session)
    frames[4] = frames[4].replace(b'"apply_request"', b'"execute_request"')
    return [frames]


def tampered_buffer(ctl):
    frames = apply_frames(ctl, ctl.session)
    frames[-1] = bytes(frames[-1])[:-1] + b"\x00"
    return [frames]


def garbage(ctl):
    route = [ctl.engine_uuid, b"test-client"]
    return [
        [*route, b"no delimiter here"],
        [*route, wire.DELIM, b"sig"],
        [*route, wire.DELIM, b"sig", b"not json", b"{}", b"{}", b"{}"],
        [ctl.engine_uuid, b"\xff" * 3000],
    ]


@pytest.mark.parametrize("make", [unsigned, wrong_key, tampered_header, garbage])
@pytest.mark.parametrize("channel", ["mux", "task", "control"])
def test_bad_messages_are_dropped_and_logged(fake_controller, engine, make, channel):
    for frames in make(fake_controller):
        fake_controller.sockets[channel].send_multipart(frames)
    still_serving(fake_controller, "mux")
    assert not fake_controller.sockets[channel].poll(100), "the engine answered a bad message"
    assert f"dropped a bad message on the {channel} socket" in engine.stderr


@pytest.mark.parametrize("channel", ["mux", "task", "control"])
def test_request_whose_buffer_changed_gets_an_error_reply(fake_controller, engine, channel):
    """The header is authentic, so the sender is answered (it modified an array while it was being sent,
    zero-copy) instead of waiting forever for a dropped request."""
    for frames in tampered_buffer(fake_controller):
        fake_controller.sockets[channel].send_multipart(frames)
    idents, reply = fake_controller.recv(channel, 20)
    assert reply["msg_type"] == "apply_reply" and reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "SerializationError"
    assert "does not match its signed digest" in reply["content"]["evalue"]
    assert reply["metadata"]["status"] == "error"
    still_serving(fake_controller, "mux")
    assert "answered an error to a request whose buffer changed" in engine.stderr


def test_replayed_request_runs_once(fake_controller, engine):
    frames = apply_frames(fake_controller, fake_controller.session)
    mux = fake_controller.sockets["mux"]
    mux.send_multipart(frames)
    mux.send_multipart(frames)
    assert wire.deserialize_object(fake_controller.reply()["buffers"]) == "bad"
    still_serving(fake_controller)
    assert not mux.poll(100)
    assert "replayed message" in engine.stderr
