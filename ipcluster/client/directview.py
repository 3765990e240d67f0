"""DirectView: run on exactly these engines, and move data to and from them (push, pull, scatter, gather)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ipcluster import wire

from . import io as clientio
from .asyncresult import AsyncMapResult, AsyncResult
from .fcache import function_pickle
from .helpers import _pull, _push
from .partition import as_sequence, check_lengths, partition, partition_bounds
from .remotefunction import func_name, make_mapper, prepare_callable

if TYPE_CHECKING:
    pass

from .view import View


class DirectView(View):
    """Runs each call on every one of its target engines; also moves data (push, pull, scatter, gather)."""

    _socket = "mux"  # the channel, for Client.send_apply_request(view._socket, ...) as in ipyparallel

    def _really_apply(
        self,
        f: Any,
        args: tuple,
        kwargs: dict,
        block: bool | None = None,
        track: bool | None = None,
        targets: Any = None,
    ) -> Any:
        targets = self._targets if targets is None else targets
        idents, ids = self.client._build_targets(targets)
        buffers = wire.pack_apply_message(None, args, kwargs, f_frame=function_pickle(prepare_callable(f)))
        block = self.block if block is None else block
        ar = self._send(
            clientio.MUX,
            block,
            lambda: self.client._submit(
                clientio.MUX,
                "apply_request",
                list(zip(idents, ids, strict=False)),
                buffers=buffers,
                fname=func_name(f),
                targets=ids,
                single=isinstance(targets, int),
                track=self.track if track is None else track,
            ),
        )
        return self._value_or_ar(ar, block)

    def _map_partitions(
        self,
        f: Any,
        sequences: tuple,
        elementwise: bool = True,
        chunksize: int | None = None,
        ordered: bool = True,
        return_exceptions: bool = False,
        track: bool | None = None,
    ) -> Any:
        seqs = [as_sequence(s) for s in sequences]
        n = check_lengths(seqs, shortest=elementwise)
        idents, ids = self.client._build_targets(self._targets)
        func = make_mapper(f) if elementwise else prepare_callable(f)
        f_frame = wire.serialize_function(func)
        items = []
        for (lo, hi), ident, eid in zip(partition_bounds(n, len(ids)), idents, ids, strict=False):
            if hi > lo:
                items.append(
                    (
                        ident,
                        eid,
                        wire.pack_apply_message(None, [s[lo:hi] for s in seqs], {}, f_frame=f_frame),
                        None,
                    )
                )
        ar = self.client._submit_batch(
            clientio.MUX,
            "apply_request",
            items,
            AsyncMapResult,
            fname=func_name(f),
            targets=ids,
            ordered=ordered,
            return_exceptions=return_exceptions,
            elementwise=elementwise,
            length=n,
            track=self.track if track is None else track,
        )
        return self._finish_call(ar, None)

    # -- code ----------------------------------------------------------------------------------------

    def execute(self, code: str, silent: bool = True, targets: Any = None, block: bool | None = None) -> Any:
        """Run a string of code in each engine's namespace.

        Returns the AsyncResult (already finished when blocking, so ``.stdout``, ``.pyout`` (the value of
        a final expression) and ``display_outputs()`` are at hand); a blocking call raises the engines'
        errors, like ipyparallel. ``silent`` is accepted for compatibility: input, output, result and
        error always reach the metadata, as in the seed.
        """
        if not isinstance(code, str):
            raise TypeError(f"code must be a str, not {type(code).__name__}")
        targets = self._targets if targets is None else targets
        idents, ids = self.client._build_targets(targets)
        block = self.block if block is None else block
        ar = self._send(
            clientio.MUX,
            block,
            lambda: self.client._submit(
                clientio.MUX,
                "execute_request",
                list(zip(idents, ids, strict=False)),
                content={"code": code, "silent": silent},
                fname="execute",
                targets=ids,
                single=isinstance(targets, int),
            ),
        )
        for msg_id in ar.msg_ids:  # the seed's pyin: the code that ran (known here: no engine round trip)
            md = self.client.metadata.get(msg_id)
            if md is not None:
                md["execute_input"] = code
        if block:
            ar.get()  # raises the engines' errors; the finished result still carries stdout, as in ipyparallel
        return ar

    def run(self, filename: str | Path, targets: Any = None, block: bool | None = None) -> Any:
        """Read a local Python file and execute it on the engines."""
        try:
            code = Path(filename).read_text()
        except OSError as exc:
            raise FileNotFoundError(f"cannot read {filename}: {exc.strerror or exc}") from exc
        return self.execute(code, targets=targets, block=block)

    # -- data ----------------------------------------------------------------------------------------

    def push(
        self, ns: dict[str, Any], targets: Any = None, block: bool | None = None, track: bool | None = None
    ) -> Any:
        """Define the names of ``ns`` in each engine's namespace."""
        if not isinstance(ns, dict):
            raise TypeError(f"push takes a dict of names to values, not {type(ns).__name__}")
        return self._really_apply(_push, (ns,), {}, block=block, track=track, targets=targets)

    def pull(
        self, names: str | list[str] | tuple[str, ...], targets: Any = None, block: bool | None = None
    ) -> Any:
        """The values of ``names`` on each engine (one value per engine, or one list per engine)."""
        if isinstance(names, str):
            pass
        elif isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
            names = list(names)
        else:
            raise TypeError(f"pull takes a name or a list of names, not {names!r}")
        return self._really_apply(_pull, (names,), {}, block=block, targets=targets)

    def update(self, ns: dict[str, Any]) -> Any:
        return self.push(ns)

    def get(self, key_s: str | list[str]) -> Any:
        return self.pull(key_s, block=True)

    def __setitem__(self, key: str, value: Any) -> None:
        self.push({key: value}, block=True)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self.pull(key, block=True)
        ids = self.client._build_targets(self._targets)[1]
        chosen = ids[key]
        return DirectView(self.client, targets=chosen, block=self.block, track=self.track)

    def scatter(
        self,
        key: str,
        seq: Any,
        dist: str = "b",
        flatten: bool = False,
        targets: Any = None,
        block: bool | None = None,
        track: bool | None = None,
    ) -> Any:
        """Split ``seq`` into contiguous pieces, one per engine, defined as ``key`` there."""
        if dist != "b":
            raise NotImplementedError(f"only dist='b' (contiguous blocks) is supported, not {dist!r}")
        if not isinstance(key, str):
            raise TypeError(f"key must be a variable name (str), not {type(key).__name__}")
        seq = as_sequence(seq, "the scattered object")
        targets = self._targets if targets is None else targets
        idents, ids = self.client._build_targets(targets)
        f_frame = wire.serialize_function(_push)
        items = []
        for part, ident, eid in zip(partition(seq, len(ids)), idents, ids, strict=False):
            if isinstance(part, range):
                part = list(part)  # engines get a list, as from a list
            value = part[0] if flatten and len(part) == 1 else part
            items.append(
                (ident, eid, wire.pack_apply_message(None, ({key: value},), {}, f_frame=f_frame), None)
            )
        ar = self.client._submit_batch(
            clientio.MUX,
            "apply_request",
            items,
            AsyncResult,
            fname="scatter",
            targets=ids,
            track=self.track if track is None else track,
        )
        value = self._finish_call(ar, block)
        return None if value is not ar else ar

    def gather(self, key: str, dist: str = "b", targets: Any = None, block: bool | None = None) -> Any:
        """The pieces of ``key`` from each engine joined into one sequence (the inverse of scatter)."""
        if dist != "b":
            raise NotImplementedError(f"only dist='b' (contiguous blocks) is supported, not {dist!r}")
        targets = self._targets if targets is None else targets
        idents, ids = self.client._build_targets(targets)
        buffers = wire.pack_apply_message(_pull, (key,), {})
        ar = self.client._submit(
            clientio.MUX,
            "apply_request",
            list(zip(idents, ids, strict=False)),
            buffers=buffers,
            make_result=AsyncMapResult,
            fname="gather",
            targets=ids,
            elementwise=False,
        )
        return self._finish_call(ar, block)

    def clear(self, targets: Any = None, block: bool | None = None) -> Any:
        return self.client.clear(self._control_targets(targets), block=self.block if block is None else block)

    @contextlib.contextmanager
    def sync_imports(self, local: bool = True, quiet: bool = False) -> Iterator[None]:
        """``with view.sync_imports(): import numpy`` imports locally and on every engine."""
        import builtins

        real_import = builtins.__import__
        names: list[tuple[str, Any, Any, int]] = []
        depth = 0  # > 0 while a recorded import runs: its own nested imports are not the user's

        def recording_import(
            name: str, globs: Any = None, locs: Any = None, fromlist: Any = (), level: int = 0
        ) -> Any:
            nonlocal depth
            if depth or names_frozen:
                return real_import(name, globs, locs, fromlist, level)
            if level == 0:
                names.append((name, fromlist, None, level))
            if not local:
                return None
            depth += 1
            try:
                return real_import(name, globs, locs, fromlist, level)
            finally:
                depth -= 1

        names_frozen = False
        builtins.__import__ = recording_import
        try:
            yield
        finally:
            names_frozen = True
            builtins.__import__ = real_import
        lines = []
        for name, fromlist, _, _ in names:
            if fromlist:
                lines.append(f"from {name} import {', '.join(fromlist)}")
                shown = f"{', '.join(fromlist)} from {name}"
            else:
                lines.append(f"import {name}")
                shown = name
            if not quiet:
                print(f"importing {shown} on engine(s)")
        if lines:
            self.execute("\n".join(lines), block=True)
