"""A cache of function pickles for ``apply``: a loop of 10,000 ``apply_async(f, i)`` pickles ``f`` once.

Only functions whose pickle cannot go stale are cached: no closure over mutable values, immutable
defaults, and every global name the code uses either undefined (a builtin), a module, or an immutable
scalar; the cache entry remembers those values and is used only while they are unchanged.
Values are compared by type and value
(never by id, which Python reuses). Anything else is pickled afresh each call.
"""

from __future__ import annotations

import types
import weakref
from typing import Any

from ipcluster import wire

_SCALARS = (int, float, complex, str, bytes, bool, type(None), range)
_MISSING = object()
_cache: weakref.WeakKeyDictionary[Any, tuple[tuple, bytes]] = weakref.WeakKeyDictionary()
# the global names a code object uses, sorted (code objects are immutable: computed once per code)
_code_names: weakref.WeakKeyDictionary[types.CodeType, tuple[str, ...]] = weakref.WeakKeyDictionary()


def _immutable(value: Any) -> bool:
    if isinstance(value, _SCALARS) or isinstance(value, types.ModuleType):
        return True
    if isinstance(value, (tuple, frozenset)):
        return all(_immutable(v) for v in value)
    return False


def _names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _fingerprint(f: types.FunctionType) -> tuple | None:
    """What the pickle depends on; None when f is not safe to cache."""
    if f.__dict__:
        return None
    if f.__closure__:
        for cell in f.__closure__:
            try:
                if not _immutable(cell.cell_contents):
                    return None
            except ValueError:  # an empty cell
                return None
    if f.__defaults__ and not _immutable(f.__defaults__):
        return None
    if f.__kwdefaults__ and not _immutable(tuple(f.__kwdefaults__.values())):
        return None
    g = f.__globals__
    used = []
    code = f.__code__
    names = _code_names.get(code)
    if names is None:
        names = _code_names[code] = tuple(sorted(_names(code)))
    for name in names:
        value = g.get(name, _MISSING)
        if value is not _MISSING and not _immutable(value):
            return None
        used.append(_key(value))
    closure = tuple(_key(c.cell_contents) for c in f.__closure__ or ())
    defaults = _key(f.__defaults__), _key(tuple((f.__kwdefaults__ or {}).items()))
    return (f.__code__, defaults, closure, tuple(used), f.__name__, f.__qualname__)


def _key(value: Any) -> Any:
    """Compares equal only to the same value of the same type (1, 1.0 and True differ); the objects are
    held, so an id can never be reused behind the cache's back."""
    if isinstance(value, (tuple, frozenset)):
        return (type(value), tuple(_key(v) for v in value))
    return (type(value), value)


def function_pickle(f: Any) -> bytes:
    """``wire.serialize_function(f)``, from the cache when f provably has not changed."""
    if type(f) is not types.FunctionType:
        return wire.serialize_function(f)
    fp = _fingerprint(f)
    if fp is None:
        return wire.serialize_function(f)
    hit = _cache.get(f)
    if hit is not None and hit[0] == fp:
        return hit[1]
    data = wire.serialize_function(f)
    _cache[f] = (fp, data)
    return data
