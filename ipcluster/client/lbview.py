"""LoadBalancedView: each task goes to one engine the scheduler picks; dependencies, retries, timeouts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ipcluster import wire

from . import io as clientio
from .asyncresult import AsyncMapResult
from .dependency import Dependency
from .fcache import function_pickle
from .partition import as_sequence, check_lengths, chunk_bounds
from .remotefunction import func_name, make_mapper, prepare_callable

if TYPE_CHECKING:
    from .client import Client

from .view import View


class LoadBalancedView(View):
    """Sends each task to one engine chosen by the scheduler; supports dependencies, retries, timeouts."""

    _flag_names = ("targets", "block", "track", "follow", "after", "timeout", "retries")
    _load_balanced = True
    _socket = "task"  # the channel, for Client.send_apply_request(view._socket, ...) as in ipyparallel

    def __init__(self, client: Client, targets: Any = None, **flags: Any) -> None:
        self.follow: Any = None
        self.after: Any = None
        self.timeout: float | None = None
        self.retries = 0
        super().__init__(client, targets, **flags)

    def set_flags(self, **kwargs: Any) -> None:
        for name in ("after", "follow"):
            if kwargs.get(name) is not None and not isinstance(kwargs[name], Dependency):
                kwargs[name] = Dependency(kwargs[name])
        if kwargs.get("timeout") is not None and not isinstance(kwargs["timeout"], (int, float)):
            raise TypeError(f"timeout must be a number of seconds, not {kwargs['timeout']!r}")
        if "retries" in kwargs and not isinstance(kwargs["retries"], int):
            raise TypeError(f"retries must be an int, not {kwargs['retries']!r}")
        super().set_flags(**kwargs)

    def _task_metadata(self) -> dict[str, Any] | None:
        md: dict[str, Any] = {}
        if self.after:
            md["after"] = self.after.as_dict()
        if self.follow:
            md["follow"] = self.follow.as_dict()
        if self.retries:
            md["retries"] = self.retries
        if self.timeout:
            md["timeout"] = float(self.timeout)
        targets = self._targets
        if targets is not None and targets != "all":
            md["targets"] = [targets] if isinstance(targets, int) else list(targets)
        return md or None

    def _really_apply(
        self,
        f: Any,
        args: tuple,
        kwargs: dict,
        block: bool | None = None,
        track: bool | None = None,
        targets: Any = None,
    ) -> Any:
        if targets is not None:
            with self.temp_flags(targets=targets):
                return self._really_apply(f, args, kwargs, block, track)
        self.client._check_open()
        if not self.client._engines:
            from ipcluster.error import NoEnginesRegistered

            raise NoEnginesRegistered("Can't run load-balanced tasks without any engines")
        buffers = wire.pack_apply_message(None, args, kwargs, f_frame=function_pickle(prepare_callable(f)))
        block = self.block if block is None else block
        ar = self._send(
            clientio.TASK,
            block,
            lambda: self.client._submit(
                clientio.TASK,
                "apply_request",
                [(None, None)],
                buffers=buffers,
                metadata=self._task_metadata(),
                fname=func_name(f),
                single=True,
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
        chunksize = 1 if chunksize is None else chunksize
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive integer, not {chunksize!r}")
        func = make_mapper(f) if elementwise else prepare_callable(f)
        f_frame = wire.serialize_function(func)
        metadata = self._task_metadata()
        items = [
            (
                None,
                None,
                wire.pack_apply_message(None, [s[lo:hi] for s in seqs], {}, f_frame=f_frame),
                metadata,
            )
            for lo, hi in chunk_bounds(n, chunksize)
        ]
        ar = self.client._submit_batch(
            clientio.TASK,
            "apply_request",
            items,
            AsyncMapResult,
            fname=func_name(f),
            ordered=ordered,
            return_exceptions=return_exceptions,
            elementwise=elementwise,
            length=n,
            track=self.track if track is None else track,
        )
        return self._finish_call(ar, None)

    def _control_targets(self, targets: Any) -> Any:
        if targets is None:
            return self._targets if self._targets is not None else "all"
        return targets
