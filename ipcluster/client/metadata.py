"""Per-task metadata: timestamps, the engine that ran it, and what it printed."""

from __future__ import annotations

from typing import Any

FIELDS = (
    "msg_id",
    "submitted",
    "started",
    "completed",
    "received",
    "engine_uuid",
    "engine_id",
    "follow",
    "after",
    "status",
    "execute_input",
    "execute_result",
    "error",
    "stdout",
    "stderr",
    "outputs",
    "data",
    "iopub_count",
)


# The seed's (IPython.parallel) names for the same IPython-message fields; read-only aliases.
SEED_ALIASES = {"pyin": "execute_input", "pyout": "execute_result", "pyerr": "error"}
ALL_KEYS = FIELDS + tuple(SEED_ALIASES)

_TEMPLATE: dict[str, Any] = dict.fromkeys(FIELDS)
_TEMPLATE.update(stdout="", stderr="", iopub_count=0)


class Metadata(dict):
    """A dict with attribute access; ``md.stdout`` and ``md['stdout']`` are the same.

    Timestamps (``submitted``, ``started``, ``completed``, ``received``) are timezone-aware datetimes.
    ``stdout``/``stderr`` fill in from the engine's output as it arrives. The seed's ``pyin`` / ``pyout``
    / ``pyerr`` read ``execute_input`` / ``execute_result`` / ``error``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        dict.__init__(self, _TEMPLATE)
        self["outputs"] = []
        self["data"] = {}
        if args or kwargs:
            self.update(*args, **kwargs)

    def __missing__(self, key: Any) -> Any:
        """``md['pyerr']`` (and ``pyin``, ``pyout``): the seed's names read the current fields."""
        alias = SEED_ALIASES.get(key)
        if alias is None:
            raise KeyError(key)
        return self[alias]

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in SEED_ALIASES

    def get(self, key: Any, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self) | set(SEED_ALIASES))

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value
