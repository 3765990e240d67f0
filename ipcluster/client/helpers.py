"""Small functions the client applies on engines: push, pull, map chunks, dependency checks.

They are marked ``interactive`` so that on the engine their globals are the engine's user namespace: that
is how ``_push`` writes into it and ``_pull`` reads from it.
"""

from __future__ import annotations

from typing import Any

from ipcluster.wire import interactive


@interactive
def _push(ns: dict[str, Any]) -> None:
    globals().update(ns)


@interactive
def _pull(keys: Any) -> Any:
    ns = globals()

    def lookup(key: str) -> Any:
        if key in ns:
            return ns[key]
        try:
            return eval(key, ns)
        except NameError:
            raise NameError(f"name {key!r} is not defined on this engine") from None

    if isinstance(keys, str):
        return lookup(keys)
    return [lookup(k) for k in keys]


@interactive
def _map_chunk(f: Any, *chunks: Any) -> list[Any]:
    from ipcluster.wire import bind_to_namespace

    f = bind_to_namespace(f, globals())
    return list(map(f, *chunks))


@interactive
def _call_with_namespace(f: Any, *args: Any, **kwargs: Any) -> Any:
    from ipcluster.wire import bind_to_namespace

    return bind_to_namespace(f, globals())(*args, **kwargs)
