"""ipyparallel-style user code that only changed its import to ``import ipcluster as ipp``.

The script runs as a real ``python script.py`` process, so its functions live in ``__main__`` exactly as
in a user's script or notebook.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    import time

    import ipcluster as ipp

    rc = ipp.Client(profile_dir=sys.argv[1], timeout=30)
    rc.wait_for_engines(3, timeout=60)
    assert len(rc.ids) == len(rc) == 3
    assert isinstance(rc[:], ipp.DirectView)

    # --- DirectView, blocking
    dview = rc[:]
    dview.block = True
    dview.execute("import math")
    assert dview.apply(lambda: math.floor(2.5)) == [2, 2, 2]
    dview["a"] = 10
    assert dview["a"] == [10, 10, 10]
    dview.push(dict(b=2, c=3))
    assert dview.pull(("b", "c")) == [[2, 3]] * 3

    def mul(x):
        return x * a          # 'a' lives on the engines

    assert dview.map(mul, range(6)) == [0, 10, 20, 30, 40, 50]
    dview.scatter("xs", list(range(12)))
    dview.execute("ys = [x * x for x in xs]")
    assert dview.gather("ys") == [x * x for x in range(12)]
    assert dview.apply(lambda r: r + 1, ipp.Reference("b")) == [3, 3, 3]

    @dview.remote(block=True)
    def where():
        import os
        return os.getpid()

    assert len(set(where())) == 3

    @dview.parallel(block=True)
    def psum(chunk):
        return sum(chunk)

    assert sum(psum(range(100))) == sum(range(100))

    with dview.sync_imports(quiet=True):
        import json
    assert dview.apply(lambda: json.dumps(1)) == ["1"] * 3

    # --- DirectView, non-blocking
    dview.block = False
    ar = dview.apply_async(lambda: 1)
    assert isinstance(ar, ipp.AsyncResult)
    ar.wait()
    assert ar.ready() and ar.successful()
    assert ar.get() == [1, 1, 1]

    # --- LoadBalancedView
    lview = rc.load_balanced_view()
    lview.block = True
    assert lview.map(lambda x: x ** 2, range(32)) == [x ** 2 for x in range(32)]
    amr = lview.map_async(lambda x: x + 1, range(10), chunksize=3)
    assert list(amr) == list(range(1, 11))
    assert lview.apply(lambda: "lb") == "lb"

    @ipp.require("json")
    def dumps_it():
        return json.dumps([1, 2])

    assert lview.apply(dumps_it) == "[1, 2]"

    @lview.parallel(block=True)
    def sq(x):
        return x[0] ** 2

    assert sq.map([[1], [2]]) == [1, 4]

    first = lview.apply_async(time.sleep, 0.2)
    then = lview.apply_with_flags(lambda: "after", after=[first], block=False)
    assert then.get(30) == "after"

    # --- errors
    try:
        dview.apply_sync(lambda: 1 / 0)
    except ipp.CompositeError as e:
        assert len(e.elist) == 3 and e.elist[0].ename == "ZeroDivisionError"
    else:
        raise AssertionError("no CompositeError")
    try:
        rc[0].apply_sync(lambda: {}["missing"])
    except ipp.RemoteError as e:
        assert e.ename == "KeyError"
    try:
        rc[0].apply_async(time.sleep, 2).get(timeout=0.1)
    except ipp.error.TimeoutError:
        pass
    else:
        raise AssertionError("no TimeoutError")

    assert rc.wait(timeout=30)
    assert ipp.Cluster is not None
    rc.close()
    print("SEED-COMPAT-OK")
    """
)


def test_ipyparallel_style_script_runs(cluster, tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(cluster.profile_dir)], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SEED-COMPAT-OK" in proc.stdout


def test_public_names():
    import ipcluster as ipp

    for name in (
        "Client",
        "DirectView",
        "LoadBalancedView",
        "AsyncResult",
        "AsyncMapResult",
        "RemoteError",
        "CompositeError",
        "require",
        "depend",
        "dependent",
        "Reference",
        "interactive",
        "error",
        "TimeoutError",
        "NoEnginesRegistered",
        "EngineError",
        "Cluster",
    ):
        assert hasattr(ipp, name), name
    assert issubclass(ipp.TimeoutError, TimeoutError)
    assert ipp.error.RemoteError is ipp.RemoteError
    import inspect

    params = list(inspect.signature(ipp.Client).parameters)
    assert params[:12] == [
        "url_file",
        "profile",
        "profile_dir",
        "ipython_dir",
        "context",
        "debug",
        "sshserver",
        "sshkey",
        "password",
        "paramiko",
        "timeout",
        "cluster_id",
    ]
