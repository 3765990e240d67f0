"""The heart: answers while user code runs, and ends the engine when the controller goes quiet."""

from __future__ import annotations

import sys
import time

import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def busy(seconds):
    print("busy")
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        x += 1
    return x


def test_heart_answers_while_user_code_runs_a_busy_loop(fake_controller, engine):
    ctl = fake_controller
    msg = ctl.apply(busy, 2.0)
    ctl.iopub_for(msg["msg_id"], 1)
    started = time.monotonic()
    ctl.reply()
    during = [p for p in ctl.pongs if p[3] > started]
    # 200 ms pings over ~2 s: a heart blocked by user code would answer none until the end.
    assert len(during) >= 5
    assert all(ok and ident == ctl.engine_uuid for ident, _n, ok, _t in during)
    gaps = [b[3] - a[3] for a, b in zip(during, during[1:], strict=False)]
    assert max(gaps) < 1.0


def test_controller_gone_exits_3_within_the_bound(fake_controller, engine):
    fake_controller.stop_pinging()
    stopped = time.monotonic()
    code = engine.wait(15)
    elapsed = time.monotonic() - stopped
    assert code == 3
    # hb_misses * hb_period = 5 * 200 ms; allow scheduling slack on a loaded machine
    assert 0.7 < elapsed < 4.0
    url = f"tcp://127.0.0.1:{fake_controller.ports['registration']}"
    assert f"controller at {url} stopped answering heartbeats; exiting" in engine.stderr


def test_controller_gone_during_user_code_still_exits_3(fake_controller, engine):
    msg = fake_controller.apply(busy, 60)
    fake_controller.iopub_for(msg["msg_id"], 1)
    fake_controller.stop_pinging()
    assert engine.wait(15) == 3


def test_hb_grace_extends_the_wait(fake_controller, start_engine):
    eng = start_engine("--file", str(fake_controller.file), "--hb-grace", "1500")
    fake_controller.accept_registration()
    fake_controller.wait_for_pong()
    fake_controller.stop_pinging()
    stopped = time.monotonic()
    assert eng.wait(15) == 3
    assert time.monotonic() - stopped > 2.0


def test_a_long_gil_holding_call_does_not_make_the_engine_exit(fake_controller, engine):
    # sum() over a range runs in C without releasing the GIL: the heart thread cannot run meanwhile.
    # The pings that queued up must count when it runs again (no false "controller gone").
    # Size one GIL-holding call to outlast the heart's deadline (hb_misses * hb_period = 1 s) on this machine.
    probe = time.perf_counter()
    sum(range(10**7))
    per_item = (time.perf_counter() - probe) / 10**7
    items = max(6 * 10**7, int(2.0 / per_item))
    started = time.monotonic()
    fake_controller.send("mux", "execute_request", {"code": f"sum(range({items}))"})
    try:
        reply = fake_controller.reply(timeout=60)
    except AssertionError:
        raise AssertionError(
            f"no reply; engine status {engine.proc.poll()}, stderr:\n{engine.stderr}"
        ) from None
    assert reply["content"]["status"] == "ok"
    elapsed = time.monotonic() - started
    assert elapsed > 1.0, f"the call took {elapsed:.2f} s: too short to starve the heart past its deadline"
    fake_controller.wait_for_pong()
    assert engine.proc.poll() is None, engine.stderr
