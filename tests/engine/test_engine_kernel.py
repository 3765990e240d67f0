"""apply/execute on a real engine process, driven through the fake controller."""

from __future__ import annotations

import sys
import time

import cloudpickle
import numpy as np

from ipcluster import wire
from ipcluster.error import UnmetDependency

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def add(a, b):
    return a + b


def test_apply_returns_result_with_reply_metadata(fake_controller, engine):
    req = fake_controller.apply(add, 2, b=40)
    reply = fake_controller.reply()
    assert reply["msg_type"] == "apply_reply"
    assert reply["parent_header"]["msg_id"] == req["msg_id"]
    assert reply["content"] == {"status": "ok"}
    assert wire.deserialize_object(reply["buffers"]) == 42
    md = reply["metadata"]
    assert md["engine_id"] == 0
    assert md["engine_uuid"] == fake_controller.engine_uuid.decode()
    assert md["status"] == "ok"
    assert md["iopub_count"] == 0
    assert md["dependencies_met"] is True
    assert wire.parse_date(md["started"]) <= wire.parse_date(md["completed"])


def test_reply_leaves_on_the_socket_the_request_came_in_on(fake_controller, engine):
    fake_controller.apply(add, 1, 2, channel="task")
    reply = fake_controller.reply("task")
    assert wire.deserialize_object(reply["buffers"]) == 3
    assert not fake_controller.sockets["mux"].poll(100)


def test_large_numpy_result_round_trips(fake_controller, engine):
    arr = np.arange(200_000, dtype="float64")
    fake_controller.apply(np.multiply, arr, 2)
    reply = fake_controller.reply()
    assert np.array_equal(wire.deserialize_object(reply["buffers"]), arr * 2)


def test_execute_defines_names_that_interactive_functions_and_references_see(fake_controller, engine):
    fake_controller.send("mux", "execute_request", {"code": "a = 5\ndef double(x):\n    return 2 * x\n"})
    assert fake_controller.reply()["content"]["status"] == "ok"

    @wire.interactive
    def use_namespace(b):
        return double(a) + b  # noqa: F821 - names live in the engine's namespace

    fake_controller.apply(use_namespace, 1)
    assert wire.deserialize_object(fake_controller.reply()["buffers"]) == 11

    fake_controller.apply(add, wire.Reference("a"), 100)
    assert wire.deserialize_object(fake_controller.reply()["buffers"]) == 105


def test_push_style_function_sets_engine_globals(fake_controller, engine):
    @wire.interactive
    def push(ns):
        globals().update(ns)

    fake_controller.apply(push, {"pushed": [1, 2]})
    assert fake_controller.reply()["content"]["status"] == "ok"
    fake_controller.send("mux", "execute_request", {"code": "pushed.append(3)"})
    fake_controller.reply()
    fake_controller.apply(add, wire.Reference("pushed"), [4])
    assert wire.deserialize_object(fake_controller.reply()["buffers"]) == [1, 2, 3, 4]


def printer(n):
    for i in range(n):
        print("line", i)
    print("to stderr", file=sys.stderr)
    return n


def test_stdout_is_published_with_request_parent_and_counted(fake_controller, engine):
    req = fake_controller.apply(printer, 3)
    reply = fake_controller.reply()
    count = reply["metadata"]["iopub_count"]
    assert count >= 2
    msgs = fake_controller.iopub_for(req["msg_id"], count)
    assert all(m["msg_type"] == "stream" for m in msgs)
    out = "".join(m["content"]["text"] for m in msgs if m["content"]["name"] == "stdout")
    err = "".join(m["content"]["text"] for m in msgs if m["content"]["name"] == "stderr")
    assert out == "line 0\nline 1\nline 2\n"
    assert err == "to stderr\n"


def test_stream_topic_names_engine_and_type(fake_controller, engine):
    fake_controller.apply(printer, 1)
    fake_controller.reply()
    topic, msg = fake_controller.iopub()
    assert topic == b"engine.0.stream"


def print_then_compute(seconds):
    print("started", end="")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "done"


def test_output_arrives_while_the_task_is_still_running(fake_controller, engine):
    req = fake_controller.apply(print_then_compute, 3.0)
    [msg] = fake_controller.iopub_for(req["msg_id"], 1, timeout=2.5)
    assert msg["content"] == {"name": "stdout", "text": "started"}
    assert not fake_controller.sockets["mux"].poll(0), "the reply came before the output"
    assert fake_controller.reply()["metadata"]["iopub_count"] == 1


def inner_failure(x):
    return 1 / x


def failing(x):
    return inner_failure(x)


def test_exception_reply_carries_traceback_and_engine_info(fake_controller, engine):
    req = fake_controller.apply(failing, 0)
    reply = fake_controller.reply()
    content = reply["content"]
    assert content["status"] == "error"
    assert content["ename"] == "ZeroDivisionError"
    assert content["evalue"] == "division by zero"
    assert content["engine_info"] == {
        "engine_id": 0,
        "engine_uuid": fake_controller.engine_uuid.decode(),
        "method": "apply",
    }
    tb = "".join(content["traceback"])
    assert "inner_failure" in tb and "failing" in tb
    assert "ipcluster/engine" not in tb, "engine internals leaked into the user's traceback"
    assert reply["metadata"]["status"] == "error"
    assert reply["metadata"]["iopub_count"] == 1
    [err] = fake_controller.iopub_for(req["msg_id"], 1)
    assert err["msg_type"] == "error"
    assert err["content"]["ename"] == "ZeroDivisionError"


def test_execute_error_traceback_shows_the_cell_source(fake_controller, engine):
    fake_controller.send("mux", "execute_request", {"code": "x = 1\nraise ValueError('bad value %d' % x)\n"})
    content = fake_controller.reply()["content"]
    assert content["ename"] == "ValueError"
    assert content["engine_info"]["method"] == "execute"
    tb = "".join(content["traceback"])
    assert "<execute-" in tb and "raise ValueError('bad value %d' % x)" in tb
    assert "kernel.py" not in tb


def test_syntax_error_in_execute_is_an_error_reply(fake_controller, engine):
    fake_controller.send("mux", "execute_request", {"code": "def f(:\n"})
    assert fake_controller.reply()["content"]["ename"] == "SyntaxError"
    fake_controller.apply(add, 1, 1)
    assert wire.deserialize_object(fake_controller.reply()["buffers"]) == 2


def unmet():
    raise UnmetDependency("not here")


def test_unmet_dependency_sets_dependencies_met_false(fake_controller, engine):
    fake_controller.apply(unmet)
    reply = fake_controller.reply()
    assert reply["content"]["ename"] == "UnmetDependency"
    assert reply["metadata"]["dependencies_met"] is False


def exits():
    sys.exit(3)


def test_sys_exit_in_user_code_is_an_error_not_an_engine_exit(fake_controller, engine):
    fake_controller.apply(exits)
    assert fake_controller.reply()["content"]["ename"] == "SystemExit"
    fake_controller.apply(add, 1, 1)
    assert wire.deserialize_object(fake_controller.reply()["buffers"]) == 2


def unpicklable():
    import threading

    return threading.Lock()


def test_unserializable_result_is_an_error_reply(fake_controller, engine):
    fake_controller.apply(unpicklable)
    content = fake_controller.reply()["content"]
    assert content["ename"] == "SerializationError"
    assert "lock" in content["evalue"]


def test_unknown_shell_request_gets_an_error_reply(fake_controller, engine):
    fake_controller.send("mux", "frobnicate_request", {})
    reply = fake_controller.reply()
    assert reply["msg_type"] == "frobnicate_reply"
    assert reply["content"]["ename"] == "ValueError"


def many_lines(n):
    for i in range(n):
        print(i)


def test_a_burst_of_prints_is_batched_not_one_message_per_print(fake_controller, engine):
    req = fake_controller.apply(many_lines, 5000)
    count = fake_controller.reply()["metadata"]["iopub_count"]
    assert 1 <= count < 200
    msgs = fake_controller.iopub_for(req["msg_id"], count)
    assert "".join(m["content"]["text"] for m in msgs) == "".join(f"{i}\n" for i in range(5000))


def test_execute_publishes_the_value_of_a_final_expression_after_its_output(fake_controller, engine):
    req = fake_controller.send(
        "mux", "execute_request", {"code": "n = 20\nprint('before')\nn + 22", "silent": True}
    )
    reply = fake_controller.reply()
    assert reply["content"]["status"] == "ok"
    assert reply["metadata"]["iopub_count"] == 2
    stream, result = fake_controller.iopub_for(req["msg_id"], 2)
    assert stream["msg_type"] == "stream" and stream["content"]["text"] == "before\n"
    assert result["msg_type"] == "execute_result"
    assert result["content"]["data"] == {"text/plain": "42"}
    assert isinstance(result["content"]["execution_count"], int)
    # '_' holds the last value, as in IPython
    fake_controller.send("mux", "execute_request", {"code": "_ + 1"})
    fake_controller.reply()
    fake_controller.apply(add, wire.Reference("_"), 0)
    assert wire.deserialize_object(fake_controller.reply()["buffers"]) == 43


def test_execute_without_a_final_value_publishes_no_result(fake_controller, engine):
    for code in ("x = 1", "None", "def f():\n    return 1\n", "print('hi')"):
        fake_controller.send("mux", "execute_request", {"code": code})
        reply = fake_controller.reply()
        assert reply["metadata"]["iopub_count"] == (1 if code.startswith("print") else 0), code


def test_failing_execute_publishes_its_error_even_when_silent(fake_controller, engine):
    req = fake_controller.send("mux", "execute_request", {"code": "1/0", "silent": True})
    assert fake_controller.reply()["metadata"]["iopub_count"] == 1
    [err] = fake_controller.iopub_for(req["msg_id"], 1)
    assert err["msg_type"] == "error" and err["content"]["ename"] == "ZeroDivisionError"


class BadRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


def test_a_result_whose_repr_fails_is_still_published(fake_controller, engine):
    fake_controller.apply(wire.interactive(lambda obj: globals().update(bad=obj)), BadRepr())
    fake_controller.reply()
    req = fake_controller.send("mux", "execute_request", {"code": "bad"})
    assert fake_controller.reply()["content"]["status"] == "ok"
    [result] = fake_controller.iopub_for(req["msg_id"], 1)
    assert "repr() failed: RuntimeError: no repr" in result["content"]["data"]["text/plain"]
