"""Client methods from SPEC section 9 / ipyparallel: wait, status queries, history, results, abort, clear."""

from __future__ import annotations

import pytest
from acceptance_cluster import module_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from module_cluster(tmp_path_factory)


def test_wait_queue_status_result_status_and_history(cluster):
    cluster.run(
        """
        import time
        import ipcluster as ipp

        rc = ipp.Client()
        lview = rc.load_balanced_view()
        ars = [lview.apply_async(time.sleep, 0.1) for _ in range(4)]
        assert rc.wait(ars, timeout=30) is True
        assert rc.wait() is True and rc.wait(timeout=5) is True
        qs = rc.queue_status()
        assert set(qs) == {0, 1, 2, "unassigned"} and set(qs[0]) >= {"queue", "completed", "tasks"}
        assert set(rc.queue_status(targets=0)) >= {"queue", "completed", "tasks"}
        assert isinstance(rc.queue_status(verbose=True)[0]["completed"], list)
        status = rc.result_status(ars[0].msg_ids)
        assert status["completed"] == ars[0].msg_ids and status["pending"] == []
        assert ars[1].msg_id in rc.result_status([a.msg_id for a in ars], status_only=False)
        history = rc.hub_history()
        assert all(a.msg_id in history for a in ars)
        assert rc.history[-4:] == [a.msg_id for a in ars]
        assert not rc.outstanding
        rc.close()
        """
    )


def test_get_result_here_and_from_another_client(cluster):
    cluster.run(
        """
        import ipcluster as ipp

        rc = ipp.Client()
        ar = rc.load_balanced_view().apply_async(lambda: "kept")
        ar.get(30)
        assert rc.get_result(ar.msg_id).get(30) == "kept"
        assert rc.get_result().get(30) == "kept"                   # default: the last one
        other = ipp.Client()
        fetched = other.get_result(ar.msg_id)
        assert isinstance(fetched, ipp.AsyncHubResult) and fetched.get(30) == "kept"
        assert fetched.metadata.engine_id == ar.metadata.engine_id
        other.close()
        assert rc.results[ar.msg_id] == "kept" and rc.metadata[ar.msg_id]["status"] == "ok"
        import datetime
        (record,) = rc.db_query({"msg_id": ar.msg_id}, keys=["msg_id", "completed", "engine_uuid"])
        assert record["msg_id"] == ar.msg_id and isinstance(record["completed"], datetime.datetime)
        assert record["engine_uuid"] == ar.metadata.engine_uuid
        rc.purge_results(jobs=ar.msg_id)
        assert ar.msg_id not in rc.hub_history()
        rc.purge_results("all")
        assert rc.hub_history() == []
        rc.close()
        """
    )


def test_abort_clear_and_spin(cluster):
    cluster.run(
        """
        import time
        import ipcluster as ipp

        rc = ipp.Client()
        busy = rc[0].apply_async(time.sleep, 0.4)
        queued = rc[0].apply_async(lambda: 1)
        rc.abort(queued)
        try:
            queued.get(30)
        except ipp.TaskAborted:
            pass
        else:
            raise AssertionError("not aborted")
        busy.get(30)
        rc[:].push({"gone": 1}, block=True)
        rc.clear(block=True)
        try:
            rc[0].pull("gone", block=True)
        except ipp.RemoteError as e:
            assert e.ename == "NameError"
        rc[:].push({"gone": 1}, block=True)
        rc[:].clear(block=True)
        rc.clear(targets=[0, 1], block=True)
        rc.spin()
        rc.close()
        """
    )


def test_client_construction_forms(cluster):
    cluster.run(
        """
        import json, os
        import ipcluster as ipp

        print(ipp.__version__)
        profile_dir = os.path.join(os.environ["IPCLUSTER_DIR"], "profile_default")
        path = os.path.join(profile_dir, "security", "ipcontroller-client.json")
        with open(path) as f:
            info = json.load(f)
        for client in (
            ipp.Client(),
            ipp.Client(profile="default"),
            ipp.Client(profile_dir=profile_dir),
            ipp.Client(path),
            ipp.Client(url_file=path),
            ipp.Client("ipcontroller-client.json"),     # looked for in the profile's security dir
            ipp.Client(info),
            ipp.Client(connection_info=info),
            ipp.Client(info["url"]),                     # the seed's Client('tcp://...'): found by its url
            ipp.Client(cluster_id=""),
        ):
            client.wait_for_engines(3, timeout=60)
            assert client.ids == [0, 1, 2]
            client.close()
        with ipp.Client(timeout=30) as rc:
            assert rc[:].apply_sync(lambda: "hello") == ["hello"] * 3
        try:
            ipp.Client(cluster_id="nothing-here", timeout=0.1)
        except ipp.error.ConnectionFileError as e:
            assert "does not exist" in str(e)
        else:
            raise AssertionError("connected to nothing")
        """
    )
