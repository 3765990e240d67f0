"""Control requests (abort, clear, shutdown) and signals on a real engine process."""

from __future__ import annotations

import signal
import sys
import time

import cloudpickle

from ipcluster import wire

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def busy(seconds):
    print("busy")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return seconds


def ident(x):
    return x


def start_busy(ctl, seconds):
    """Send a busy loop and return once it is running (its first output has arrived)."""
    msg = ctl.apply(busy, seconds)
    ctl.iopub_for(msg["msg_id"], 1)
    return msg


def control_reply(ctl, timeout=20):
    idents, msg = ctl.recv("control", timeout)
    assert idents == [ctl.engine_uuid, b"test-client"]
    return msg


def test_abort_named_queued_requests(fake_controller, engine):
    ctl = fake_controller
    start_busy(ctl, 1.0)
    doomed = ctl.apply(ident, "doomed")
    kept = ctl.apply(ident, "kept", channel="task")
    ctl.send("control", "abort_request", {"msg_ids": [doomed["msg_id"]]})
    assert control_reply(ctl)["content"]["status"] == "ok"
    replies = {}
    for _ in range(2):
        r = ctl.reply()
        replies[r["parent_header"]["msg_id"]] = r
    r = ctl.reply("task")
    replies[r["parent_header"]["msg_id"]] = r
    assert replies[doomed["msg_id"]]["content"] == {"status": "aborted"}
    assert replies[doomed["msg_id"]]["msg_type"] == "apply_reply"
    assert replies[doomed["msg_id"]]["metadata"]["status"] == "aborted"
    assert wire.deserialize_object(replies[kept["msg_id"]]["buffers"]) == "kept"


def test_abort_all_queued_requests(fake_controller, engine):
    ctl = fake_controller
    first = start_busy(ctl, 1.0)
    queued = [ctl.apply(ident, i) for i in range(3)]
    ctl.send("control", "abort_request", {"msg_ids": None})
    abort_reply = control_reply(ctl)
    assert abort_reply["msg_type"] == "abort_reply"
    statuses = {}
    for _ in range(4):
        r = ctl.reply()
        statuses[r["parent_header"]["msg_id"]] = r["content"]["status"]
    assert statuses[first["msg_id"]] == "ok"
    assert [statuses[q["msg_id"]] for q in queued] == ["aborted"] * 3
    ctl.apply(ident, "after")
    assert wire.deserialize_object(ctl.reply()["buffers"]) == "after"


def test_abort_of_a_request_not_arrived_yet_applies_on_arrival(fake_controller, engine):
    ctl = fake_controller
    msg = ctl.session.msg("apply_request", {})
    ctl.send("control", "abort_request", {"msg_ids": [msg["msg_id"]]})
    control_reply(ctl)
    frames = ctl.session.serialize(
        msg, wire.pack_apply_message(ident, (1,), {}), [ctl.engine_uuid, b"test-client"]
    )
    ctl.sockets["mux"].send_multipart(frames)
    assert ctl.reply()["content"]["status"] == "aborted"


def test_control_is_served_before_queued_shell_requests(fake_controller, engine):
    ctl = fake_controller
    ctl.send("mux", "execute_request", {"code": "a = 1"})
    ctl.reply()
    busy_msg = start_busy(ctl, 1.0)
    queued = [ctl.apply(ident, wire.Reference("a")) for _ in range(3)]
    ctl.send("control", "clear_request")
    assert control_reply(ctl)["msg_type"] == "clear_reply"
    assert ctl.reply()["parent_header"]["msg_id"] == busy_msg["msg_id"]
    for msg in queued:
        reply = ctl.reply()
        assert reply["parent_header"]["msg_id"] == msg["msg_id"]
        assert reply["content"]["ename"] == "NameError", "a queued request ran before the clear"


def test_clear_empties_the_namespace(fake_controller, engine):
    ctl = fake_controller
    ctl.send("mux", "execute_request", {"code": "a = 1"})
    ctl.reply()
    ctl.send("control", "clear_request")
    assert control_reply(ctl)["content"]["status"] == "ok"
    ctl.apply(ident, wire.Reference("a"))
    content = ctl.reply()["content"]
    assert content["ename"] == "NameError" and "'a'" in content["evalue"]
    ctl.send("mux", "execute_request", {"code": "assert __name__ == '__main__'\nimport os"})
    assert ctl.reply()["content"]["status"] == "ok"


def test_shutdown_replies_then_exits_0(fake_controller, engine):
    ctl = fake_controller
    ctl.send("control", "shutdown_request", {"restart": False})
    reply = control_reply(ctl)
    assert reply["msg_type"] == "shutdown_reply" and reply["content"]["status"] == "ok"
    assert engine.wait() == 0
    _idents, msg = ctl.recv("registration")
    assert msg["msg_type"] == "unregistration_request" and msg["content"] == {"id": 0}


def test_shutdown_aborts_queued_requests(fake_controller, engine):
    ctl = fake_controller
    start_busy(ctl, 1.0)
    queued = ctl.apply(ident, 1)
    ctl.send("control", "shutdown_request", {})
    statuses = {}
    for _ in range(2):
        r = ctl.reply()
        statuses[r["parent_header"]["msg_id"]] = r["content"]["status"]
    assert statuses[queued["msg_id"]] == "aborted"
    assert control_reply(ctl)["msg_type"] == "shutdown_reply"
    assert engine.wait() == 0


def test_sigterm_while_idle_exits_0_and_unregisters(fake_controller, engine):
    engine.proc.send_signal(signal.SIGTERM)
    assert engine.wait() == 0
    _idents, msg = fake_controller.recv("registration")
    assert msg["msg_type"] == "unregistration_request"


def test_sigterm_during_user_code_exits_0(fake_controller, engine):
    start_busy(fake_controller, 30)
    engine.proc.send_signal(signal.SIGTERM)
    assert engine.wait(10) == 0


def test_sigterm_while_waiting_for_registration_exits_0(fake_controller, start_engine):
    eng = start_engine("--file", str(fake_controller.file))
    fake_controller.recv("registration")
    eng.proc.send_signal(signal.SIGTERM)
    assert eng.wait() == 0


def test_sigint_interrupts_the_running_task_only(fake_controller, engine):
    start_busy(fake_controller, 30)
    engine.proc.send_signal(signal.SIGINT)
    assert fake_controller.reply()["content"]["ename"] == "KeyboardInterrupt"
    fake_controller.apply(ident, 5)
    assert wire.deserialize_object(fake_controller.reply()["buffers"]) == 5
