"""The engines-registering progress bar (rich on a terminal, one line per change otherwise)."""

from __future__ import annotations

import sys
from typing import Any

import click


class EngineProgress:
    """``update(registered, wanted)`` is the ``progress`` callback of ``Cluster.wait_for_engines_sync``."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._progress: Any = None
        self._task: Any = None
        self._last = -1

    def __enter__(self) -> EngineProgress:
        if sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("engines registered"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                transient=False,
            )  # fmt: skip
            self._progress.start()
            self._task = self._progress.add_task("engines", total=self.total)
        return self

    def update(self, registered: int, wanted: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=registered, total=wanted)
        elif registered != self._last:
            click.echo(f"engines registered: {registered}/{wanted}")
        self._last = registered

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
