"""Graph and functional dependencies, checked locally (the engine-side behaviour is in test_lbview)."""

from __future__ import annotations

import pytest

import ipcluster as ipp
from ipcluster.client.dependency import Dependency
from ipcluster.error import UnmetDependency


def test_dependency_check_and_unreachable():
    dep = Dependency(["a", "b"])
    assert not dep.check({"a"})
    assert dep.check({"a", "b"})
    assert dep.unreachable({"a"}, {"b"})
    anyof = Dependency(["a", "b"], all=False)
    assert anyof.check({"b"})
    assert not anyof.unreachable({"a"}, {"b"}) or anyof.check({"a"})
    failure_ok = Dependency(["a"], success=False, failure=True)
    assert failure_ok.check(set(), {"a"})
    assert failure_ok.unreachable({"a"}, set())
    assert Dependency().check(set())
    with pytest.raises(ValueError):
        Dependency(["a"], success=False, failure=False)


def test_wire_form_matches_the_scheduler():
    from ipcluster.controller.dependency import Dependency as SchedulerDependency

    dep = Dependency(["x", "y"], all=False, failure=True)
    parsed = SchedulerDependency.from_wire(dep.as_dict())
    assert parsed.ids == {"x", "y"} and parsed.all is False and parsed.failure is True
    assert Dependency.from_dict(dep.as_dict()) == dep


def test_dependency_from_async_results_and_ids():
    class Fake:
        msg_ids = ["m1", "m2"]

    assert Dependency([Fake(), "m3"]) == {"m1", "m2", "m3"}
    assert Dependency("m4") == {"m4"}
    with pytest.raises(TypeError):
        Dependency(5)


def test_depend_and_dependent_run_locally():
    calls = []

    def ok():
        calls.append("checked")
        return True

    @ipp.depend(ok)
    def f(x):
        return x + 1

    assert f(1) == 2 and calls == ["checked"]
    guarded = ipp.dependent(lambda: 1, lambda: False)
    with pytest.raises(UnmetDependency):
        guarded()
    assert f.__name__ == "f"


def test_require_imports_names():
    @ipp.require("json", "os.path", js="json")
    def g():
        return 1

    assert g() == 1

    @ipp.require("a_module_that_does_not_exist")
    def h():
        return 1

    with pytest.raises(UnmetDependency):
        h()
    with pytest.raises(TypeError):
        ipp.require(5)
