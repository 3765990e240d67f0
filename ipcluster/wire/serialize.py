"""Python objects to wire buffers and back: cloudpickle with pickle-5 out-of-band buffers.

Frame 0 of an object is the pickle; every large contiguous buffer inside it (a numpy array's data, a
bytes object over the threshold) becomes its own frame, so it crosses the wire without being copied into
the pickle. Functions, lambdas and closures pickle by value through cloudpickle.
"""

from __future__ import annotations

import pickle
import types
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle

from ipcluster.error import SerializationError

# Buffers smaller than this stay inside the pickle: a frame of its own costs more than the copy.
OUT_OF_BAND_THRESHOLD = 64 * 1024

_INTERACTIVE_ATTR = "__ipcluster_interactive__"


def _buffer_callback(out: list[memoryview]) -> Callable[[pickle.PickleBuffer], bool]:
    def keep_or_split(buf: pickle.PickleBuffer) -> bool:
        try:
            view = buf.raw()
        except BufferError:  # not contiguous: let pickle copy it in-band
            return True
        if view.nbytes < OUT_OF_BAND_THRESHOLD:
            return True
        out.append(view)
        return False

    return keep_or_split


def _describe(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return f"{type(obj).__name__} {name!r}" if name else repr(obj)[:80]


_PLAIN_TYPES = frozenset({int, float, complex, bool, str, bytes, type(None)})


def _plain(obj: Any, depth: int) -> bool:
    """True for small trees of builtin scalars (tiny tasks' args and results): pickled in-band by plain
    pickle exactly as by cloudpickle."""
    t = type(obj)
    if t in _PLAIN_TYPES:
        return True
    if depth > 2 or t not in (tuple, list, dict) or len(obj) > 32:
        return False
    depth += 1
    if t is dict:
        for k, v in obj.items():
            if type(k) is not str or (type(v) not in _PLAIN_TYPES and not _plain(v, depth)):
                return False
        return True
    for x in obj:
        if type(x) not in _PLAIN_TYPES and not _plain(x, depth):
            return False
    return True


def serialize_object(obj: Any) -> list[bytes | memoryview]:
    """[pickle, *out_of_band_buffers] for any object cloudpickle can handle.

    Raises SerializationError naming the object when it cannot be pickled (an open file, a lock, ...).
    """
    if _plain(obj, 0):  # the same bytes cloudpickle would write, without building a CloudPickler
        return [pickle.dumps(obj, protocol=5)]
    buffers: list[memoryview] = []
    try:
        payload = cloudpickle.dumps(obj, protocol=5, buffer_callback=_buffer_callback(buffers))
    except Exception as exc:
        raise SerializationError(f"cannot send {_describe(obj)} to the engines: {exc}") from exc
    return [payload, *buffers]


def deserialize_object(frames: Sequence[Any]) -> Any:
    """Inverse of serialize_object; frames may be bytes, memoryviews or zmq Frames."""
    if not frames:
        raise SerializationError("no frames to deserialize")
    head, *rest = (_as_buffer(f) for f in frames)
    return pickle.loads(head, buffers=rest)


def _as_buffer(frame: Any) -> Any:
    buf = getattr(frame, "buffer", None)  # zmq.Frame
    return buf if buf is not None else frame


def serialize_function(f: Callable[..., Any]) -> bytes:
    """The pickle of a callable alone, so a map can send the same function bytes with every task."""
    if not callable(f):
        raise TypeError(f"f must be callable, not {type(f).__name__}")
    try:
        return cloudpickle.dumps(f, protocol=5)
    except Exception as exc:
        raise SerializationError(f"cannot send {_describe(f)} to the engines: {exc}") from exc


def pack_apply_message(
    f: Callable[..., Any] | None,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    f_frame: bytes | None = None,
) -> list[Any]:
    """Buffers for a call: [pickle of f, pickle of (args, kwargs), *out-of-band buffers of the arguments].

    Pass ``f_frame`` (from serialize_function) to reuse one function pickle across many calls.
    """
    head = f_frame if f_frame is not None else serialize_function(f)  # type: ignore[arg-type]
    try:
        call = serialize_object((tuple(args), dict(kwargs)))
    except SerializationError:
        for item in (*args, *kwargs.values()):
            try:
                cloudpickle.dumps(item, protocol=5)
            except Exception as exc:
                raise SerializationError(f"cannot send {_describe(item)} to the engines: {exc}") from exc
        raise
    return [head, *call]


class FunctionCache:
    """Unpickled functions by their pickle bytes: a map's thousand tasks unpickle f once.

    Bounded; only small pickles are cached (a big closure is cheaper to unpickle than to keep).
    """

    def __init__(self, size: int = 64, max_bytes: int = 64 * 1024) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._cache: dict[bytes, Any] = {}

    def load(self, frame: Any) -> Any:
        raw = _as_buffer(frame)
        if len(raw) > self.max_bytes:
            return pickle.loads(raw)
        key = bytes(raw)
        f = self._cache.get(key)
        if f is None:
            f = pickle.loads(key)
            if len(self._cache) >= self.size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = f
        return f


def unpack_apply_message(
    frames: Sequence[Any], cache: FunctionCache | None = None
) -> tuple[Callable[..., Any], tuple, dict[str, Any]]:
    """Inverse of pack_apply_message: (f, args, kwargs)."""
    if len(frames) < 2:
        raise SerializationError(f"an apply request needs at least 2 buffers, got {len(frames)}")
    f = cache.load(frames[0]) if cache is not None else pickle.loads(_as_buffer(frames[0]))
    args, kwargs = deserialize_object(frames[1:])
    return f, args, kwargs


def interactive(f: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a function so that, on the engine, its globals are the engine's user namespace.

    Functions defined in ``__main__`` (a script, a notebook) get this treatment anyway; this decorator is
    for helpers defined in modules, like the ones behind push and pull.
    """
    setattr(f, _INTERACTIVE_ATTR, True)
    f.__module__ = "__main__"
    return f


def is_interactive(f: Any) -> bool:
    return isinstance(f, types.FunctionType) and (
        getattr(f, _INTERACTIVE_ATTR, False) or f.__module__ == "__main__"
    )


def bind_to_namespace(f: Callable[..., Any], namespace: dict[str, Any]) -> Callable[..., Any]:
    """Rebuild an interactive function with ``namespace`` as its globals.

    Names the function captured at pickling time (its imports, its helpers) are added to the namespace
    only where the namespace has no value of its own, so names pushed to the engine win.
    """
    if not is_interactive(f):
        return f
    assert isinstance(f, types.FunctionType)
    for name, value in f.__globals__.items():
        if not name.startswith("__"):
            namespace.setdefault(name, value)
    namespace.setdefault("__builtins__", __builtins__)
    rebound = types.FunctionType(f.__code__, namespace, f.__name__, f.__defaults__, f.__closure__)
    rebound.__kwdefaults__ = f.__kwdefaults__
    rebound.__dict__.update(f.__dict__)
    rebound.__qualname__ = f.__qualname__
    return rebound


class Reference:
    """A name in the engine's namespace, passed as an argument and looked up where the call runs.

    ``view.apply(f, ipp.Reference('a'))`` calls ``f(a)`` with the engine's own ``a``.
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"Reference takes a variable name (str), not {type(name).__name__}")
        self.name = name

    def __repr__(self) -> str:
        return f"<Reference: {self.name!r}>"

    def get_object(self, namespace: dict[str, Any]) -> Any:
        try:
            return eval(self.name, namespace)  # a dotted name or an expression, like the seed
        except NameError as exc:
            raise NameError(f"name {self.name!r} is not defined on this engine") from exc


def resolve_references(args: tuple, kwargs: dict[str, Any], namespace: dict[str, Any]) -> tuple[tuple, dict]:
    """Replace every top-level Reference in a call's arguments by its value in ``namespace``."""
    if not kwargs:
        for a in args:
            if isinstance(a, Reference):
                break
        else:
            return args, kwargs  # nothing to resolve: the common case, without copying
    new_args = tuple(a.get_object(namespace) if isinstance(a, Reference) else a for a in args)
    new_kwargs = {k: (v.get_object(namespace) if isinstance(v, Reference) else v) for k, v in kwargs.items()}
    return new_args, new_kwargs
