"""``Client.results``: every finished task's result by msg_id, unpickled on first access."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import Client


class ResultsView(MutableMapping):
    """A dict-like view of the results the client has received (values are results or exceptions)."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._cache: dict[str, Any] = {}

    def __getitem__(self, msg_id: str) -> Any:
        if msg_id in self._cache:
            return self._cache[msg_id]
        reply = self._client._replies.get(msg_id)
        if reply is None or msg_id in self._client._pending:
            raise KeyError(msg_id)
        value = self._client._unpack_reply(reply, msg_id)
        self._cache[msg_id] = value
        return value

    def __setitem__(self, msg_id: str, value: Any) -> None:
        self._cache[msg_id] = value

    def __delitem__(self, msg_id: str) -> None:
        found = self._cache.pop(msg_id, None) is not None
        found = self._client._replies.pop(msg_id, None) is not None or found
        self._client.metadata.pop(msg_id, None)
        if not found:
            raise KeyError(msg_id)

    def _done_ids(self) -> list[str]:
        pending = self._client._pending
        return [m for m in list(self._client._replies) if m not in pending]

    def __iter__(self) -> Iterator[str]:
        return iter(self._done_ids())

    def __len__(self) -> int:
        return len(self._done_ids())

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._cache or (
            msg_id in self._client._replies and msg_id not in self._client._pending
        )

    def clear(self) -> None:
        self._cache.clear()
        for msg_id in self._done_ids():
            self._client._replies.pop(msg_id, None)
            self._client.metadata.pop(msg_id, None)

    def __repr__(self) -> str:
        return f"<results of {len(self)} tasks>"
