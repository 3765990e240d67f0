"""The seed's documented client API (SPEC §9, §11) and the ipyparallel names users rely on, used the way code
written for them uses them, against a real cluster. A name or behaviour that regresses fails here."""

from __future__ import annotations

import inspect
import os
import time

import pytest

import ipcluster as ipp
from ipcluster import error

CLIENT_NAMES = (
    "block outstanding results metadata history debug profile ids spin wait close clear abort shutdown "
    "send_apply_message send_apply_request send_execute_request load_balanced_view direct_view get_result "
    "resubmit result_status queue_status purge_results hub_history db_query wait_for_engines executor "
    "activate become_dask"
).split()
VIEW_NAMES = (
    "history outstanding results wait spin abort get_result queue_status purge_results shutdown set_flags "
    "temp_flags apply apply_async apply_sync apply_with_flags map map_async map_sync imap remote parallel "
    "use_cloudpickle use_dill use_pickle activate block track targets"
).split()
DIRECT_ONLY = "clear sync_imports execute run push pull scatter gather update get".split()
RESULT_NAMES = (
    "get get_dict wait ready successful msg_ids metadata sent wait_for_send wait_for_output stdout stderr "
    "engine_id progress wall_time serial_time elapsed display_outputs abort pyin pyout pyerr execute_result"
).split()
ERROR_NAMES = (
    "NoEnginesRegistered TimeoutError EngineError TaskAborted RemoteError CompositeError InvalidDependency "
    "ImpossibleDependency TaskTimeout DependencyTimeout UnmetDependency KernelError wrap_exception "
    "unwrap_exception collect_exceptions"
).split()


def test_every_documented_name_exists(rc):
    for name in CLIENT_NAMES:
        assert hasattr(rc, name), f"Client.{name}"
    for view in (rc[:], rc.load_balanced_view()):
        for name in VIEW_NAMES:
            assert hasattr(view, name), f"{type(view).__name__}.{name}"
    for name in DIRECT_ONLY:
        assert hasattr(rc[:], name), f"DirectView.{name}"
    for name in ERROR_NAMES:
        assert hasattr(error, name), f"error.{name}"
    for name in (
        "AsyncResult",
        "AsyncMapResult",
        "AsyncHubResult",
        "Dependency",
        "require",
        "depend",
        "dependent",
    ):
        assert hasattr(ipp, name), name
    ar = rc[0].apply_async(os.getpid)
    ar.get(30)
    for name in RESULT_NAMES:
        assert hasattr(ar, name), f"AsyncResult.{name}"
    params = inspect.signature(ipp.Client.resubmit).parameters
    assert list(params)[1:4] == ["indices_or_msg_ids", "subheader", "block"]
    assert list(inspect.signature(ipp.Dependency).parameters) == ["dependencies", "all", "success", "failure"]


def test_execute_publishes_pyout_and_display_outputs_prints_it(rc, capsys):
    ar = rc[:].execute("1+1", block=True)
    assert ar.get() == [None] * len(rc)  # execute's result is its output, not a value
    for i, eid in enumerate(rc.ids):
        pyout = ar.metadata[i]["pyout"]
        assert pyout["data"] == {"text/plain": "2"} and isinstance(pyout["execution_count"], int)
        assert ar.metadata[i].execute_result is pyout and ar.metadata[i].pyin == "1+1"
        assert ar.metadata[i].engine_id == eid
    assert [p["data"]["text/plain"] for p in ar.pyout] == ["2"] * len(rc)
    ar.display_outputs()
    out = capsys.readouterr().out
    for eid in rc.ids:
        assert f"Out[{eid}:" in out and "]: 2" in out
    one = rc[0].execute("print('side'); 'text'", block=True)
    assert one.metadata.pyout["data"]["text/plain"] == "'text'" and one.stdout == "side\n"
    assert rc[0].execute("x = 1", block=True).metadata.pyout is None


def test_another_client_fetches_pyout_from_the_controller(cluster, rc):
    ar = rc[0].execute("'from the hub'", block=True)
    deadline = time.monotonic() + 30
    while not rc.db_query({"msg_id": ar.msg_id}, keys=["execute_result"])[0]["execute_result"]:
        assert time.monotonic() < deadline, "the controller never recorded the execute_result"
        time.sleep(0.02)
    other = cluster.client()
    try:
        fetched = other.get_result(ar.msg_id)
        fetched.get(30)
        assert fetched.metadata.pyout["data"]["text/plain"] == "'from the hub'"
    finally:
        other.close()


def test_failing_execute_fills_pyerr(rc):
    ar = rc[0].execute("1/0")
    with pytest.raises(ipp.RemoteError):
        ar.get(30)
    assert ar.metadata.pyerr.ename == "ZeroDivisionError" and ar.metadata.pyin == "1/0"
    assert ar.metadata["status"] == "error"


def test_client_state_attributes(rc, capsys):
    assert rc.profile == "default" and rc.debug is False
    ar = rc[0].apply_async(time.sleep, 0.2)
    assert ar.msg_id in rc.outstanding and rc.history[-1] == ar.msg_id
    ar.get(30)
    assert ar.msg_id not in rc.outstanding
    assert rc.results[ar.msg_id] is None and rc.metadata[ar.msg_id]["status"] == "ok"
    rc.wait_for_engines(len(rc), timeout=10)
    with pytest.raises(ipp.TimeoutError):
        rc.wait_for_engines(len(rc) + 5, timeout=0.2)
    rc.debug = True
    try:
        rc[0].apply_sync(lambda: "debugged")
    finally:
        rc.debug = False
    assert "apply_reply" in capsys.readouterr().out


def test_view_helpers_delegate_to_the_client(rc):
    view = rc[:]
    view.block = False
    ar = view.apply(lambda: 3)
    assert view.history[-len(rc) :] == ar.msg_ids
    assert view.wait(timeout=30) is True and not view.outstanding
    view.spin()
    assert [view.results[m] for m in ar.msg_ids] == [3] * len(rc)
    assert view.get_result(ar.msg_ids[-1]).get(30) == 3
    status = view.queue_status()
    assert set(status) >= set(rc.ids) | {"unassigned"}
    view.purge_results(jobs=ar.msg_ids)
    assert ar.msg_ids[0] not in rc.hub_history()
    for use in (view.use_cloudpickle, view.use_dill, view.use_pickle):
        assert use() is None
    with view.temp_flags(block=True):
        assert view.apply(lambda: 1) == [1] * len(rc)
    assert view.block is False
    view.set_flags(block=True)
    view["cleared"] = 1
    view.clear(block=True)
    with pytest.raises(ipp.CompositeError):
        view.execute("cleared")
    with pytest.raises(KeyError, match="Invalid name"):
        view.set_flags(nonsense=1)


def test_view_abort_and_sync_imports(rc):
    view = rc[1]
    busy = view.apply_async(time.sleep, 0.5)
    queued = view.apply_async(lambda: "never")
    view.abort(queued, block=True)
    with pytest.raises(ipp.TaskAborted):
        queued.get(30)
    busy.get(30)
    dview = rc[:]
    with dview.sync_imports(quiet=True):
        import colorsys
    assert colorsys.hls_to_rgb(0, 0, 0) == (0, 0, 0)  # imported here too
    assert dview.apply_sync(lambda: colorsys.__name__) == ["colorsys"] * len(rc)


def test_asyncresult_attributes(rc):
    def chatty(x):
        import sys

        print("out", x)
        print("err", x, file=sys.stderr)
        return x

    view = rc[:]
    view.set_flags(track=True)  # the caller may reuse its buffers once ar.sent
    ar = view.apply_async(chatty, 5)
    ar.wait_for_send(5)
    assert ar.sent
    assert ar.wait_for_output(30) is True
    assert ar.get_dict() == dict.fromkeys(rc.ids, 5)
    assert ar[0] == 5 and ar.progress == len(rc) == len(ar)
    assert ar.stdout == ["out 5\n"] * len(rc) and ar.stderr == ["err 5\n"] * len(rc)
    assert ar.engine_id == rc.ids and ar["engine_id"] == rc.ids
    assert ar.wall_time > 0 and ar.serial_time >= 0 and ar.elapsed == ar.wall_time
    single = rc[0].apply_async(chatty, 6)
    assert single.get(30) == 6 and single.engine_id == rc.ids[0] and single.stdout == "out 6\n"


def test_low_level_sends(rc):
    ar = rc.send_apply_message("mux", pow, (2, 10), ident=rc.ids[0])
    assert ar.get(30) == 1024 and ar.metadata.engine_id == rc.ids[0]
    lview = rc.load_balanced_view()
    ar = rc.send_apply_request(lview._socket, pow, (3, 2), metadata={"retries": 1})
    assert ar.get(30) == 9
    ar = rc.send_execute_request(rc[:]._socket, "21 * 2", ident=rc.ids[-1])
    ar.get(30)
    assert ar.metadata.pyout["data"]["text/plain"] == "42"
    with pytest.raises(ValueError, match="needs ident"):
        rc.send_apply_message("mux", pow, (1, 1))


def test_out_of_scope_integrations_raise_clear_errors(rc):
    with pytest.raises(NotImplementedError, match="view.execute"):
        rc.activate()
    with pytest.raises(NotImplementedError, match="view.execute"):
        rc[:].activate()
    with pytest.raises(NotImplementedError, match="executor"):
        rc.become_dask()


def test_error_helpers():
    zero = 0
    try:
        1 / zero
    except ZeroDivisionError:
        content = error.wrap_exception({"engine_id": 7})  # the seed's call, inside the except block
    assert content["ename"] == "ZeroDivisionError" and content["engine_info"] == {"engine_id": 7}
    exc = error.unwrap_exception(content)
    assert isinstance(exc, ipp.RemoteError) and exc.engine_id == 7 and "1 / zero" in exc.traceback
    assert error.collect_exceptions({0: 1, 1: 2}) == {0: 1, 1: 2}
    with pytest.raises(ipp.CompositeError) as info:
        error.collect_exceptions([1, exc, error.CompositeError("x", [exc, exc])], "apply")
    assert len(info.value.elist) == 3


def test_dependencies_and_resubmit(rc):
    lview = rc.load_balanced_view()

    @ipp.require("colorsys")
    def needs_colorsys():
        return colorsys.__name__  # noqa: F821 - imported on the engine by require

    assert lview.apply_sync(needs_colorsys) == "colorsys"

    def has_module(name):
        import importlib.util

        return importlib.util.find_spec(name) is not None

    @ipp.depend(has_module, "json")
    def anywhere():
        return "ran"

    @ipp.depend(has_module, "no_such_module_here")
    def nowhere():
        return "ran"

    with pytest.raises(ipp.ImpossibleDependency):
        lview.apply_sync(nowhere)
    assert lview.apply_sync(anywhere) == "ran"
    first = lview.apply_async(pow, 2, 5)
    after = lview.apply_with_flags(pow, (2, 6), after=ipp.Dependency([first]), block=False)
    assert after.get(30) == 64
    again = rc.resubmit(after.msg_ids, block=True)
    assert again.get() == [64]


def test_view_shutdown_stops_an_engine(cluster, rc):
    before = set(rc.ids)
    cluster.add_engine()
    rc.wait_for_engines(len(before) + 1, timeout=60)
    (new,) = set(rc.ids) - before
    rc[new].shutdown(block=True)
    deadline = time.monotonic() + 30
    while new in rc.ids and time.monotonic() < deadline:
        time.sleep(0.05)
    assert new not in rc.ids and set(rc.ids) == before
