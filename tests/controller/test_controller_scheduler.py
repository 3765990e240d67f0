"""The load-balancing scheduler: schemes, hwm, retries, dependencies, targets, timeouts, engine death."""

from __future__ import annotations

import pytest
import zmq
from controller_peers import nothing_within


def _first_with_task(*engines, timeout_ms=5000):
    """The engine a load-balanced task went to, and the other one."""
    poller = zmq.Poller()
    for eng in engines:
        poller.register(eng.task, zmq.POLLIN)
    ready = dict(poller.poll(timeout_ms))
    assert ready, "no engine got the task"
    first = next(e for e in engines if e.task in ready)
    return first, next(e for e in engines if e is not first)


def _drain(eng, channel="task", timeout_ms=300):
    got = []
    while eng.sockets[channel].poll(timeout_ms):
        got.append(eng.recv(channel))
    return got


def test_leastload_spreads_tasks_over_two_engines(cluster):
    a, b = cluster.engine(), cluster.engine()
    client = cluster.client()
    for _ in range(6):
        client.apply("task")
    got_a, got_b = _drain(a), _drain(b)
    assert len(got_a) == 3 and len(got_b) == 3
    idents, req = got_a[0]
    assert idents == [client.session.bsession]
    a.reply("task", idents, req, buffers=[b"r"])
    reply = client.recv("task")
    assert reply["parent_header"]["msg_id"] == req["msg_id"] and bytes(reply["buffers"][0]) == b"r"
    # the engine with fewer tasks in flight gets the next one
    nxt = client.apply("task")
    idents, req = a.recv("task")
    assert req["msg_id"] == nxt["msg_id"]


def test_lru_scheme_round_robins(start_cluster):
    cluster = start_cluster("--scheme", "lru")
    a, b = cluster.engine(), cluster.engine()
    client = cluster.client()
    for _ in range(4):
        client.apply("task")
    assert len(_drain(a)) == 2 and len(_drain(b)) == 2


def test_hwm_holds_tasks_until_an_engine_frees_up(start_cluster):
    cluster = start_cluster("--hwm", "1")
    eng = cluster.engine()
    client = cluster.client()
    sent = [client.apply("task") for _ in range(3)]
    first = _drain(eng)
    assert len(first) == 1 and first[0][1]["msg_id"] == sent[0]["msg_id"]
    q = client.query("queue_request", {"verbose": True})["content"]
    assert q["unassigned"] == [sent[1]["msg_id"], sent[2]["msg_id"]]
    assert q[str(eng.id)]["tasks"] == [sent[0]["msg_id"]]
    eng.reply("task", *first[0])
    client.recv("task")
    second = _drain(eng)
    assert [r["msg_id"] for _, r in second] == [sent[1]["msg_id"]]


def test_tasks_wait_for_the_first_engine(cluster):
    client = cluster.client()
    req = client.apply("task")
    eng = cluster.engine()
    _, got = eng.recv("task")
    assert got["msg_id"] == req["msg_id"]


def test_failed_task_with_retries_reruns_on_another_engine(cluster):
    a, b = cluster.engine(), cluster.engine()
    client = cluster.client()
    req = client.apply("task", metadata={"retries": 1})
    first, other = _first_with_task(a, b)
    idents, got = first.recv("task")
    first.reply(
        "task",
        idents,
        got,
        content={"status": "error", "ename": "ValueError", "evalue": "x", "traceback": []},
    )
    idents2, got2 = other.recv("task")
    assert got2["msg_id"] == req["msg_id"]
    other.reply("task", idents2, got2)
    assert client.recv("task")["content"]["status"] == "ok"


def test_retry_with_nowhere_left_returns_the_real_error(cluster):
    eng = cluster.engine()
    client = cluster.client()
    client.apply("task", metadata={"retries": 3})
    idents, got = eng.recv("task")
    eng.reply(
        "task",
        idents,
        got,
        content={"status": "error", "ename": "ValueError", "evalue": "x", "traceback": []},
    )
    assert client.recv("task")["content"]["ename"] == "ValueError"


def test_unmet_dependency_reroutes_then_impossible(cluster):
    a, b = cluster.engine(), cluster.engine()
    client = cluster.client()
    req = client.apply("task")
    unmet = {"status": "error", "ename": "UnmetDependency", "evalue": "", "traceback": []}
    first, other = _first_with_task(a, b)
    first.reply("task", *first.recv("task"), content=unmet, metadata={"dependencies_met": False})
    idents, got = other.recv("task")
    assert got["msg_id"] == req["msg_id"]
    other.reply("task", idents, got, content=unmet, metadata={"dependencies_met": False})
    reply = client.recv("task")
    assert reply["content"]["ename"] == "ImpossibleDependency"
    assert reply["parent_header"]["msg_id"] == req["msg_id"]


def test_after_dependency_waits_for_its_task(cluster):
    eng = cluster.engine()
    client = cluster.client()
    first = client.apply("task")
    second = client.apply("task", metadata={"after": [first["msg_id"]]})
    idents, got = eng.recv("task")
    assert got["msg_id"] == first["msg_id"]
    assert nothing_within(eng.task, 300)
    eng.reply("task", idents, got)
    client.recv("task")
    _, got2 = eng.recv("task")
    assert got2["msg_id"] == second["msg_id"]


def test_after_a_failed_task_is_impossible_unless_failure_allowed(cluster):
    eng = cluster.engine()
    client = cluster.client()
    first = client.apply("task")
    strict = client.apply("task", metadata={"after": [first["msg_id"]]})
    lenient = client.apply("task", metadata={"after": {"dependencies": [first["msg_id"]], "failure": True}})
    idents, got = eng.recv("task")
    eng.reply(
        "task", idents, got, content={"status": "error", "ename": "ValueError", "evalue": "", "traceback": []}
    )
    replies = {client.recv("task")["parent_header"]["msg_id"]: None for _ in range(2)}
    assert strict["msg_id"] in replies
    _, got = eng.recv("task")
    assert got["msg_id"] == lenient["msg_id"]


def test_follow_runs_where_the_followed_task_ran(cluster):
    a, b = cluster.engine(), cluster.engine()
    client = cluster.client()
    first = client.apply("task")
    ran_on, _ = _first_with_task(a, b)
    idents, got = ran_on.recv("task")
    ran_on.reply("task", idents, got)
    client.recv("task")
    for _ in range(3):
        client.apply("task", metadata={"follow": [first["msg_id"]]})
    assert len(_drain(ran_on)) == 3


def test_targets_restrict_and_unknown_target_is_impossible(cluster):
    a, b = cluster.engine(), cluster.engine()
    client = cluster.client()
    for _ in range(3):
        client.apply("task", metadata={"targets": [b.id]})
    assert len(_drain(b)) == 3 and nothing_within(a.task, 100)
    client.apply("task", metadata={"targets": [a.uuid]})
    assert len(_drain(a)) == 1
    client.apply("task", metadata={"targets": [99]})
    assert client.recv("task")["content"]["ename"] == "ImpossibleDependency"


def test_unknown_dependency_is_invalid(cluster):
    cluster.engine()
    client = cluster.client()
    client.apply("task", metadata={"after": ["nonexistent"]})
    assert client.recv("task")["content"]["ename"] == "InvalidDependency"


def test_timeout_fails_a_waiting_task(cluster):
    client = cluster.client()
    req = client.apply("task", metadata={"timeout": 0.3})  # no engine: it waits, then times out
    reply = client.recv("task", timeout_ms=5000)
    assert reply["content"]["ename"] == "TaskTimeout" and reply["parent_header"]["msg_id"] == req["msg_id"]


def test_engine_death_fails_lb_task_or_retries_elsewhere(cluster):
    a = cluster.engine()
    client = cluster.client()
    plain = client.apply("task")
    retried = client.apply("task", metadata={"retries": 1})
    assert len(_drain(a)) == 2
    b = cluster.engine()
    a.stop_beating()
    reply = client.recv("task", timeout_ms=5000)
    assert reply["parent_header"]["msg_id"] == plain["msg_id"]
    assert reply["content"]["ename"] == "EngineError" and str(a.id) in reply["content"]["evalue"]
    idents, got = b.recv("task")
    assert got["msg_id"] == retried["msg_id"]


@pytest.mark.parametrize("scheme", ["plainrandom", "twobin", "weighted"])
def test_random_schemes_place_every_task(start_cluster, scheme):
    cluster = start_cluster("--scheme", scheme)
    a, b = cluster.engine(), cluster.engine()
    client = cluster.client()
    assert client.query("connection_request")["content"]["task_scheme"] == scheme
    for _ in range(20):
        client.apply("task")
    got = _drain(a) + _drain(b)
    assert len(got) == 20
