"""Task dependencies: graph dependencies (``after``/``follow``) and functional ones (``require``/``depend``).

A graph dependency is a set of msg_ids the scheduler checks before running a load-balanced task; it travels
in the request metadata as ``Dependency.as_dict()``. A functional dependency runs on the engine just before
the task: when it does not hold there, the task raises ``UnmetDependency`` and the scheduler tries another
engine.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable
from typing import Any

from ipcluster.error import UnmetDependency
from ipcluster.wire import bind_to_namespace, interactive


def _msg_ids_of(obj: Any) -> list[str]:
    """msg_ids from a msg_id, an AsyncResult, a Dependency or an iterable of those."""
    if obj is None:
        return []
    if isinstance(obj, str):
        return [obj]
    msg_ids = getattr(obj, "msg_ids", None)
    if msg_ids is not None and not isinstance(obj, set):
        return list(msg_ids)
    if isinstance(obj, Iterable):
        out: list[str] = []
        for item in obj:
            out.extend(_msg_ids_of(item))
        return out
    raise TypeError(f"a dependency is a msg_id, an AsyncResult or a list of them, not {type(obj).__name__}")


class Dependency(set):
    """A set of msg_ids a task waits for.

    ``all``: every task (True) or any one (False) must be done; ``success``/``failure``: whether a
    successful / failed task satisfies it. With the defaults a task runs after all its dependencies
    succeeded, and becomes impossible when one of them fails.
    """

    def __init__(
        self,
        dependencies: Any = (),
        all: bool = True,  # noqa: A002 - the seed's keyword
        success: bool = True,
        failure: bool = False,
    ) -> None:
        if isinstance(dependencies, Dependency):
            all, success, failure = dependencies.all, dependencies.success, dependencies.failure  # noqa: A001
        super().__init__(_msg_ids_of(dependencies))
        self.all = all
        if not (success or failure):
            raise ValueError("a dependency must be satisfied by success, failure, or both")
        self.success = success
        self.failure = failure

    def _satisfying(self, completed: set[str], failed: set[str]) -> set[str]:
        done: set[str] = set()
        if self.success:
            done |= set(completed)
        if self.failure:
            done |= set(failed)
        return done

    def check(self, completed: Iterable[str], failed: Iterable[str] | None = None) -> bool:
        """Whether the dependency is met, given the completed and failed msg_ids."""
        if not self:
            return True
        done = self._satisfying(set(completed), set(failed or ()))
        return self.issubset(done) if self.all else not self.isdisjoint(done)

    def unreachable(self, completed: Iterable[str], failed: Iterable[str] | None = None) -> bool:
        """Whether the dependency can never be met any more."""
        if not self:
            return False
        finished = set(completed) | set(failed or ())
        against: set[str] = set()
        if not self.success:
            against |= set(completed)
        if not self.failure:
            against |= set(failed or ())
        if self.all:
            return not self.isdisjoint(against)
        return self.issubset(finished) and self.issubset(against)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form carried in the request metadata (docs/protocol.md §8)."""
        return {
            "dependencies": sorted(self),
            "all": self.all,
            "success": self.success,
            "failure": self.failure,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dependency:
        return cls(
            data.get("dependencies", ()),
            data.get("all", True),
            data.get("success", True),
            data.get("failure", False),
        )

    def __repr__(self) -> str:
        return f"Dependency({sorted(self)!r}, all={self.all}, success={self.success}, failure={self.failure})"


class dependent:  # noqa: N801 - the seed's public name
    """``f`` guarded by ``df(*dargs, **dkwargs)``: when df returns False the call raises UnmetDependency.

    On an engine both functions see the engine's namespace (the views send a dependent through a small
    interactive trampoline), so ``require`` can import into it.
    """

    def __init__(
        self, _wrapped_f: Callable[..., Any], _wrapped_df: Callable[..., Any], *dargs: Any, **dkwargs: Any
    ):
        self.f = _wrapped_f
        self.df = _wrapped_df
        self.dargs = dargs
        self.dkwargs = dkwargs
        name = getattr(_wrapped_f, "__name__", None)
        self.__name__ = name if isinstance(name, str) else type(_wrapped_f).__name__
        self.__doc__ = getattr(_wrapped_f, "__doc__", None)

    def call_in(self, namespace: dict[str, Any] | None, *args: Any, **kwargs: Any) -> Any:
        df = bind_to_namespace(self.df, namespace) if namespace is not None else self.df
        met = df(*self.dargs, **self.dkwargs)
        if met is False:
            raise UnmetDependency(
                f"dependency {getattr(self.df, '__name__', self.df)!r} not met on this engine"
            )
        f = self.f
        if isinstance(f, dependent):
            return f.call_in(namespace, *args, **kwargs)
        if namespace is not None:
            f = bind_to_namespace(f, namespace)
        if isinstance(met, Imported) and isinstance(f, types.FunctionType):
            # a function from a module (not interactive) keeps its own globals: give it the imports too
            for name, value in met.items():
                f.__globals__.setdefault(name, value)
        return f(*args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call_in(None, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<dependent {self.__name__} on {getattr(self.df, '__name__', self.df)!r}>"


class depend:  # noqa: N801 - the seed's public name
    """Decorator: ``@depend(df, *args, **kwargs)`` runs the task only where ``df(*args, **kwargs)`` is not False."""

    def __init__(self, _wrapped_f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if not callable(_wrapped_f):
            raise TypeError(f"depend needs a callable dependency function, not {type(_wrapped_f).__name__}")
        self.df = _wrapped_f
        self.args = args
        self.kwargs = kwargs

    def __call__(self, f: Callable[..., Any]) -> dependent:
        return dependent(f, self.df, *self.args, **self.kwargs)


class Imported(dict):
    """What ``require`` defined on the engine (a true value: the dependency is met)."""

    def __bool__(self) -> bool:
        return True


@interactive
def _require(*names: Any, **mapping: str) -> Any:
    """Import modules (and define pushed functions) in the engine namespace; False if an import fails."""
    import importlib as _importlib

    from ipcluster.client.dependency import Imported

    ns = globals()
    done = Imported()
    try:
        for name in names:
            if isinstance(name, str):
                _importlib.import_module(name)
                top = name.split(".")[0]
                done[top] = _importlib.import_module(top)
            else:
                done[name.__name__] = name
        for alias, module_name in mapping.items():
            done[alias] = _importlib.import_module(module_name)
    except ImportError:
        return False
    ns.update(done)
    return done


def require(*objects: Any, **mapping: Any) -> Callable[[Callable[..., Any]], dependent]:
    """Decorator: run only where these modules import, and import them (or define these functions) there.

    ``@require('numpy', 'os.path', np='numpy', helper_function)``: strings and modules are imported on the
    engine under their names; functions are defined in the engine namespace; ``alias='module'`` imports
    under an alias.
    """
    names: list[Any] = []
    for obj in objects:
        if isinstance(obj, types.ModuleType):
            names.append(obj.__name__)
        elif isinstance(obj, str):
            names.append(obj)
        elif callable(obj):
            names.append(obj)
        else:
            raise TypeError(f"require takes module names, modules or functions, not {type(obj).__name__}")
    aliases = {}
    for alias, module in mapping.items():
        aliases[alias] = module.__name__ if isinstance(module, types.ModuleType) else str(module)
    return depend(_require, *names, **aliases)


__all__ = ["Dependency", "depend", "dependent", "require"]
