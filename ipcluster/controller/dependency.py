"""Task dependencies as the scheduler sees them: a set of msg_ids with all/success/failure flags.

On the wire (request metadata ``after``/``follow``) a dependency is either a list of msg_ids or a dict
``{"dependencies": [...], "all": bool, "success": bool, "failure": bool}`` (docs/protocol.md §8).
``after`` means "run once these finished"; ``follow`` means "run where these ran".
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any


class Dependency:
    """``all`` (default True): every id must qualify, else any one. ``success``/``failure``: which outcomes
    count as met (default: success only)."""

    __slots__ = ("ids", "all", "success", "failure")

    def __init__(
        self,
        ids: Collection[str] = (),
        all: bool = True,  # noqa: A002 - the seed's public name
        success: bool = True,
        failure: bool = False,
    ) -> None:
        self.ids = set(ids)
        self.all = all
        self.success = success
        self.failure = failure

    @classmethod
    def from_wire(cls, value: Any) -> Dependency:
        """Parse request metadata; ValueError with the accepted forms on anything else."""
        if value is None or value == []:
            return NO_DEPENDENCY
        if isinstance(value, str):
            return cls([value])
        if isinstance(value, (list, tuple)):
            if not all(isinstance(v, str) for v in value):
                raise ValueError("a dependency list must hold msg_id strings")
            return cls(value)
        if isinstance(value, dict):
            ids = value.get("dependencies", [])
            if not isinstance(ids, (list, tuple)) or not all(isinstance(v, str) for v in ids):
                raise ValueError("dependency 'dependencies' must be a list of msg_id strings")
            return cls(
                ids,
                bool(value.get("all", True)),
                bool(value.get("success", True)),
                bool(value.get("failure", False)),
            )
        raise ValueError(
            "a dependency is a list of msg_ids or {'dependencies': [...], 'all', 'success', 'failure'}"
        )

    def __bool__(self) -> bool:
        return bool(self.ids)

    def __repr__(self) -> str:
        return f"Dependency({sorted(self.ids)!r}, all={self.all}, success={self.success}, failure={self.failure})"

    def _accepted(self, completed: Collection[str], failed: Collection[str]) -> set[str]:
        ok: set[str] = set()
        if self.success:
            ok |= self.ids & set(completed) if not isinstance(completed, set) else self.ids & completed
        if self.failure:
            ok |= self.ids & set(failed) if not isinstance(failed, set) else self.ids & failed
        return ok

    def check(self, completed: Collection[str], failed: Collection[str]) -> bool:
        """True when the dependency is met given these finished ids."""
        if not self.ids:
            return True
        accepted = self._accepted(completed, failed)
        return accepted == self.ids if self.all else bool(accepted)

    def unreachable(self, completed: Collection[str], failed: Collection[str]) -> bool:
        """True when the dependency can never be met whatever happens next."""
        if not self.ids:
            return False
        finished = (self.ids & set(completed)) | (self.ids & set(failed))
        rejected = finished - self._accepted(completed, failed)
        if self.all:
            return bool(rejected)
        return rejected == self.ids


NO_DEPENDENCY = Dependency()  # shared by every task without one: never mutated
