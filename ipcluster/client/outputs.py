"""Printing what tasks produced, for ``AsyncResult.display_outputs``: streams, display data, results."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .metadata import Metadata


def print_outputs(mds: list[Metadata], groupby: str = "type") -> None:
    """Print each task's stdout ``[stdout:<engine>]``, stderr, display data and execute result
    ``Out[<engine>:<n>]: value``: by type (every stdout, then every stderr, ...), by engine, or in order."""
    if groupby not in ("type", "engine", "order"):
        raise ValueError(f"groupby must be 'type', 'engine' or 'order', not {groupby!r}")
    if groupby == "engine":
        mds = sorted(mds, key=lambda md: (md.get("engine_id") is None, md.get("engine_id") or 0))
    printers: tuple[Callable[[Metadata], None], ...] = (
        lambda md: _print_stream(md, "stdout"),
        lambda md: _print_stream(md, "stderr"),
        _print_display_data,
        _print_execute_result,
    )
    if groupby == "type":
        for show in printers:
            for md in mds:
                show(md)
    else:
        for md in mds:
            for show in printers:
                show(md)


def _print_stream(md: Metadata, name: str) -> None:
    text = md.get(name) or ""
    if not text:
        return
    stream = sys.stdout if name == "stdout" else sys.stderr
    header = f"[{name}:{md.get('engine_id')}]"
    if len(text.splitlines()) > 1:
        print(header, file=stream)
        print(text, end="" if text.endswith("\n") else "\n", file=stream)
    else:
        print(f"{header} {text}", end="" if text.endswith("\n") else "\n", file=stream)


def _plain_text(content: dict[str, Any] | None) -> str:
    data = (content or {}).get("data") or {}
    return str(data.get("text/plain", "")) if isinstance(data, dict) else str(data)


def _print_display_data(md: Metadata) -> None:
    for output in md.get("outputs") or []:
        text = _plain_text(output)
        if text:
            print(f"[output:{md.get('engine_id')}] {text}")


def _print_execute_result(md: Metadata) -> None:
    result = md.get("execute_result")
    if not result:
        return
    text = _plain_text(result)
    prompt = f"Out[{md.get('engine_id')}:{result.get('execution_count')}]:"
    print(f"{prompt}\n{text}" if "\n" in text else f"{prompt} {text}")
