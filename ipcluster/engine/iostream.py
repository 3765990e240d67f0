"""stdout/stderr of user code as iopub ``stream`` messages (docs/protocol.md §8).

Writes are buffered and published at newline bursts, at most every 50 ms, so a loop of prints does not
become a message per print; a tiny flusher thread sends output that would otherwise sit in the buffer
while user code computes. The kernel flushes before every reply, so a client that has the reply and
``iopub_count`` messages has all of a request's output.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

FLUSH_INTERVAL = 0.05  # seconds: the longest a line waits in the buffer

# publish(msg_type, content, parent_header): sends one iopub message (the kernel's, lock-guarded).
Publisher = Callable[[str, dict[str, Any], dict[str, Any]], None]


class OutStream(io.TextIOBase):
    """A text stream that publishes what is written to it as ``stream {name, text}`` messages.

    Thread-safe: user code may print from several threads; the text goes out with the header of the
    request running when it was flushed.
    """

    def __init__(self, name: str, publish: Publisher, flusher: Flusher | None = None) -> None:
        super().__init__()
        self.name = name
        self._publish = publish
        self._flusher = flusher
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._last_flush = 0.0
        self.parent_header: dict[str, Any] = {}

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        with self._lock:
            self._buffer.append(text)
            now = time.monotonic()
            due = "\n" in text and now - self._last_flush >= FLUSH_INTERVAL
            if due:
                self._flush_locked(now)
        if not due and self._flusher is not None:
            self._flusher.wake()
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:  # type: ignore[override]
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if not self._buffer:  # nothing written: skip the lock (the kernel flushes after every request)
            return
        with self._lock:
            if self._buffer:
                self._flush_locked(time.monotonic())

    def flush_if_stale(self) -> bool:
        """Flush text that has waited at least FLUSH_INTERVAL; True if text is still waiting."""
        with self._lock:
            if not self._buffer:
                return False
            now = time.monotonic()
            if now - self._last_flush >= FLUSH_INTERVAL:
                self._flush_locked(now)
                return False
            return True

    def _flush_locked(self, now: float) -> None:
        text = "".join(self._buffer)
        self._buffer.clear()
        self._last_flush = now
        self._publish("stream", {"name": self.name, "text": text}, self.parent_header)


class Flusher(threading.Thread):
    """Flushes stale output of the engine's streams while user code runs without writing."""

    def __init__(self) -> None:
        super().__init__(name="ipengine-flusher", daemon=True)
        self.streams: list[OutStream] = []
        self._pending = threading.Event()
        self._stopping = threading.Event()  # not _stop: Thread has a method of that name

    def wake(self) -> None:
        if not self._pending.is_set():
            self._pending.set()

    def stop(self) -> None:
        self._stopping.set()
        self._pending.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._pending.wait()
            self._pending.clear()
            # Text is waiting: flush it once due, and keep going while writers keep the buffers non-empty.
            waiting = True
            while waiting and not self._stopping.wait(FLUSH_INTERVAL):
                waiting = False
                for stream in self.streams:
                    try:
                        waiting = stream.flush_if_stale() or waiting
                    except Exception:  # the iopub socket closed at exit: nothing more to send
                        return
