"""One adapter per system under test, all with the interface of :class:`base.Adapter`.

Each adapter runs inside ``bench/worker.py`` under the system's own interpreter (ours for ipcluster and
the baselines, ``bench/.venvs/<name>`` for the peers), so nothing here may import a peer at module level.
"""

ADAPTERS = {
    "ipcluster": "systems.ipcluster_sys:IPClusterAdapter",
    "ipyparallel": "systems.ipyparallel_sys:IPyParallelAdapter",
    "dask": "systems.dask_sys:DaskAdapter",
    "baseline": "systems.baseline:BaselineAdapter",
}
