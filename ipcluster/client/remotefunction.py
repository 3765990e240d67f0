"""Functions that run remotely: ``@view.remote()`` and ``@view.parallel()``, and how a call is packed.

A map sends the function once: it is wrapped in a small interactive closure pickled a single time, and
every chunk reuses those bytes (``pack_apply_message(..., f_frame=...)``), so the engines unpickle it once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ipcluster.wire import interactive

if TYPE_CHECKING:
    from .view import View


def func_name(f: Any) -> str:
    return getattr(f, "__name__", None) or type(f).__name__


def make_mapper(f: Callable[..., Any]) -> Callable[..., list[Any]]:
    """An interactive closure mapping ``f`` over chunks; on the engine ``f`` sees the user namespace."""

    @interactive
    def _ipcluster_map(*chunks: Any) -> list[Any]:
        from ipcluster.wire import bind_to_namespace

        ns = globals()
        if hasattr(f, "call_in"):
            return [f.call_in(ns, *items) for items in zip(*chunks, strict=False)]
        return list(map(bind_to_namespace(f, ns), *chunks))

    return _ipcluster_map


def make_dependent_call(dep: Any) -> Callable[..., Any]:
    """An interactive trampoline running a ``dependent`` with the engine namespace."""

    @interactive
    def _ipcluster_dependent(*args: Any, **kwargs: Any) -> Any:
        return dep.call_in(globals(), *args, **kwargs)

    _ipcluster_dependent.__name__ = func_name(dep)
    return _ipcluster_dependent


def prepare_callable(f: Any) -> Any:
    """Check ``f`` is callable; route functional dependencies through their trampoline."""
    if not callable(f):
        raise TypeError(f"f must be callable, not {type(f).__name__}")
    if hasattr(f, "call_in"):
        return make_dependent_call(f)
    return f


class RemoteFunction:
    """``f`` bound to a view: calling it runs ``view.apply(f, *args, **kwargs)`` with these flags."""

    def __init__(self, view: View, f: Callable[..., Any], block: bool | None = None, **flags: Any) -> None:
        self.view = view
        self.func = f
        self.block = block
        self.flags = flags
        functools.update_wrapper(self, f)  # type: ignore[arg-type]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        block = self.view.block if self.block is None else self.block
        with self.view.temp_flags(block=block, **self.flags):
            return self.view.apply(self.func, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<RemoteFunction {func_name(self.func)} on {self.view!r}>"


class ParallelFunction(RemoteFunction):
    """A function called on pieces of its arguments across the engines.

    ``pf(seq)`` calls ``f`` once per partition (one per engine on a DirectView, one per ``chunksize``
    items on a LoadBalancedView) and joins the pieces; ``pf.map(seq)`` calls ``f`` on each element.
    """

    def __init__(
        self,
        view: View,
        f: Callable[..., Any],
        dist: str = "b",
        block: bool | None = None,
        chunksize: int | None = None,
        ordered: bool = True,
        **flags: Any,
    ) -> None:
        if dist != "b":
            raise NotImplementedError(f"only dist='b' (contiguous blocks) is supported, not {dist!r}")
        super().__init__(view, f, block=block, **flags)
        self.chunksize = chunksize
        self.ordered = ordered

    def __call__(self, *sequences: Any) -> Any:
        block = self.view.block if self.block is None else self.block
        with self.view.temp_flags(block=block, **self.flags):
            return self.view._map_partitions(
                self.func, sequences, chunksize=self.chunksize, ordered=self.ordered, elementwise=False
            )

    def map(self, *sequences: Any) -> Any:
        block = self.view.block if self.block is None else self.block
        kwargs: dict[str, Any] = {"ordered": self.ordered}
        if self.chunksize is not None:
            kwargs["chunksize"] = self.chunksize
        with self.view.temp_flags(block=block, **self.flags):
            return self.view._map_partitions(self.func, sequences, elementwise=True, **kwargs)


def remote(
    view: View, block: bool | None = None, **flags: Any
) -> Callable[[Callable[..., Any]], RemoteFunction]:
    """Decorator form: ``@remote(view)`` turns a function into a RemoteFunction."""

    def decorator(f: Callable[..., Any]) -> RemoteFunction:
        return RemoteFunction(view, f, block=block, **flags)

    return decorator


def parallel(
    view: View, dist: str = "b", block: bool | None = None, **flags: Any
) -> Callable[[Callable[..., Any]], ParallelFunction]:
    """Decorator form: ``@parallel(view)`` turns a function into a ParallelFunction."""

    def decorator(f: Callable[..., Any]) -> ParallelFunction:
        return ParallelFunction(view, f, dist=dist, block=block, **flags)

    return decorator
