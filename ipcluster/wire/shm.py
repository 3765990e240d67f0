"""Same-host big buffers through shared memory instead of two TCP hops (docs/protocol.md §1.1).

A 100 MB array pushed to an engine on the same machine would otherwise be copied into the client's socket,
out of it in the controller, into the controller's engine socket and out again in the engine: four copies
of every byte through the kernel. Through a file in the shared-memory directory it is written once by the
client and mapped by the engine. The message itself still travels the normal signed path; only the buffer's
frame is left empty, its digest stays in the signed header, and the engine checks the mapped bytes against
that digest, so nothing is trusted that the key did not sign.

Who can share: an engine advertises itself with a probe file named after its uuid; a client shares with an
engine only when it can see that probe, owned by its own user, in its own shared-memory directory. Another
machine, container or user never sees the probe and gets the buffers inline, as always.

Who cleans up: the client owns every buffer file. It unlinks the file when the last engine it was sent to
has answered (a mapping outlives the unlink), when that engine is gone, or when the client closes. File
names carry the creating pid, so ``ipcluster clean`` can remove what a killed client or engine left.
"""

from __future__ import annotations

import mmap
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

SHM_DIR_ENV = "IPCLUSTER_SHM_DIR"
DEFAULT_THRESHOLD = 1 << 20  # buffers from 1 MiB go through shared memory
PROBE_PREFIX = "ipcluster-engine-"
BUFFER_PREFIX = "ipcluster-buf-"
_NAME = re.compile(r"^ipcluster-buf-[0-9]+-[0-9a-f]+-[0-9]+$")
# Private: an engine's writes to its array stay its own (copy-on-write, page by page). Not MAP_POPULATE: on
# a writable private mapping it copies every page up front; lazy read faults map the shared pages in batches.
_MAP_FLAGS = mmap.MAP_PRIVATE


T = TypeVar("T")


class ShmError(Exception):
    """A shared-memory buffer named in a signed header cannot be used (gone, wrong size, bad name)."""


def shm_dir() -> Path | None:
    """The shared-memory directory of this machine, or None where there is none (then nothing is shared)."""
    configured = os.environ.get(SHM_DIR_ENV)
    if configured is not None:
        return Path(configured) if configured else None
    path = Path("/dev/shm")
    return path if path.is_dir() and os.access(path, os.W_OK | os.X_OK) else None


# -- engines: the probe ---------------------------------------------------------------------------------


def advertise(engine_uuid: str) -> Path | None:
    """Create this engine's probe file (0600); None when there is no shared-memory directory."""
    directory = shm_dir()
    if directory is None:
        return None
    path = directory / f"{PROBE_PREFIX}{engine_uuid}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{engine_uuid} {os.getpid()}\n".encode("ascii"))
        finally:
            os.close(fd)
    except OSError:
        return None
    return path


def withdraw(path: Path | None) -> None:
    if path is not None:
        _unlink(path)


def attach(header: dict[str, Any], buffers: list[Any]) -> None:
    """Replace the empty frames of shared-memory buffers named in ``header['shm']`` by their mapped bytes.

    Call it after the header's signature was verified and before the buffer digests are checked: the digests
    then cover the mapped bytes. Raises ShmError naming the buffer that cannot be mapped.
    """
    entries = header.get("shm")
    if not entries:
        return
    if not isinstance(entries, list) or len(entries) != len(buffers):
        raise ShmError(
            f"{len(buffers)} buffers but {len(entries) if isinstance(entries, list) else 0} shm entries"
        )
    directory = shm_dir()
    for i, entry in enumerate(entries):
        if entry is None:
            continue
        if directory is None:
            raise ShmError(
                "a buffer was sent through shared memory but this host has no shared-memory directory"
            )
        buffers[i] = _map(directory, entry, i)


def _map(directory: Path, entry: Any, index: int) -> memoryview:
    name, size = (entry.get("name"), entry.get("size")) if isinstance(entry, dict) else (None, None)
    if not isinstance(name, str) or not _NAME.match(name) or not isinstance(size, int) or size <= 0:
        raise ShmError(f"buffer {index}: malformed shm entry {entry!r}")
    try:
        fd = os.open(directory / name, os.O_RDONLY)
    except OSError as exc:
        raise ShmError(
            f"buffer {index}: shared-memory file {name} cannot be opened: {exc.strerror}"
        ) from None
    try:
        actual = os.fstat(fd).st_size
        if actual != size:
            raise ShmError(f"buffer {index}: shared-memory file {name} has {actual} bytes, expected {size}")
        mapped = mmap.mmap(fd, size, flags=_MAP_FLAGS, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    return memoryview(mapped)


# -- clients: exporting buffers -------------------------------------------------------------------------


class ShmExporter:
    """Writes big buffers to shared-memory files for the engines on this host, and unlinks them when done.

    Thread-safe: calls are made from user threads (export) and the client's IO thread (release).
    """

    def __init__(self, token: str, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.threshold = threshold
        self.directory = shm_dir() if threshold > 0 else None
        self._prefix = f"{BUFFER_PREFIX}{os.getpid()}-{token}-"
        self._counter = 0
        self._lock = threading.Lock()
        self._local: dict[str, bool] = {}  # engine uuid -> probe seen
        self._holders: dict[str, list[str]] = {}  # msg_id -> buffer files it keeps alive
        self._refs: dict[str, int] = {}  # buffer file -> msg_ids still holding it

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def wants(self, buffers: Iterable[Any]) -> bool:
        """True when some buffer is big enough to be worth a file."""
        return self.directory is not None and any(_nbytes(b) >= self.threshold for b in buffers)

    def is_local(self, engine_uuid: str) -> bool:
        """True when that engine's probe is in our shared-memory directory and owned by our user."""
        known = self._local.get(engine_uuid)
        if known is None:
            known = self._local[engine_uuid] = self._probe(engine_uuid)
        return known

    def _probe(self, engine_uuid: str) -> bool:
        if self.directory is None or not re.fullmatch(r"[0-9A-Za-z_-]+", engine_uuid):
            return False
        path = self.directory / f"{PROBE_PREFIX}{engine_uuid}"
        try:
            st = path.stat()
            return (
                stat.S_ISREG(st.st_mode)
                and st.st_uid == os.getuid()
                and path.read_bytes().split(b" ", 1)[0] == engine_uuid.encode("ascii")
            )
        except OSError:
            return False

    def export(self, buffers: list[Any]) -> tuple[list[Any], list[dict[str, Any] | None]]:
        """(frames, shm entries): each big buffer written to a new file, its frame left empty."""
        frames: list[Any] = []
        entries: list[dict[str, Any] | None] = []
        assert self.directory is not None
        for buf in buffers:
            size = _nbytes(buf)
            if size < self.threshold:
                frames.append(buf)
                entries.append(None)
                continue
            name = self._write(buf, size)
            frames.append(b"")
            entries.append({"name": name, "size": size})
        return frames, entries

    def export_while(
        self, buffers: list[Any], work: Callable[[], T]
    ) -> tuple[tuple[list[Any], list[Any]], T]:
        """``export(buffers)`` on a worker thread while ``work()`` (hashing the same buffers) runs here.

        Both release the GIL on big buffers, so on two cores the copy and the hash overlap.
        """
        box: list[Any] = []

        def write() -> None:
            try:
                box.append(self.export(buffers))
            except BaseException as exc:  # re-raised in the caller
                box.append(exc)

        writer = threading.Thread(target=write, name="ipcluster-shm-export", daemon=True)
        writer.start()
        try:
            result = work()
        except BaseException:
            writer.join()
            if not isinstance(box[0], BaseException):
                self.forget_unheld(box[0][1])
            raise
        writer.join()
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0], result

    def _write(self, buf: Any, size: int) -> str:
        with self._lock:
            self._counter += 1
            name = f"{self._prefix}{self._counter}"
            self._refs[name] = 0
        assert self.directory is not None
        view = memoryview(getattr(buf, "buffer", buf)).cast("B")
        fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            written = 0
            while written < size:  # write() copies straight into the file's pages, no page faults here
                written += os.write(fd, view[written:])
        except BaseException:
            os.close(fd)
            self._drop(name)
            raise
        os.close(fd)
        return name

    def hold(self, msg_id: str, entries: list[dict[str, Any] | None]) -> None:
        """``msg_id`` keeps these files alive until its reply (or failure) is seen."""
        names = [e["name"] for e in entries if e is not None]
        if not names:
            return
        with self._lock:
            self._holders[msg_id] = names
            for name in names:
                self._refs[name] = self._refs.get(name, 0) + 1

    def forget_unheld(self, entries: list[dict[str, Any] | None]) -> None:
        """Unlink files written for a message that was never sent."""
        with self._lock:
            stale = [e["name"] for e in entries if e is not None and not self._refs.get(e["name"])]
        for name in stale:
            self._drop(name)

    def release(self, msg_id: str) -> None:
        """The reply of ``msg_id`` arrived (or it failed): unlink the files no other message needs."""
        if not self._holders:
            return
        with self._lock:
            names = self._holders.pop(msg_id, None)
            if not names:
                return
            done = []
            for name in names:
                left = self._refs.get(name, 1) - 1
                if left <= 0:
                    done.append(name)
                else:
                    self._refs[name] = left
        for name in done:
            self._drop(name)

    def close(self) -> None:
        with self._lock:
            names = list(self._refs)
            self._holders.clear()
        for name in names:
            self._drop(name)

    def live_files(self) -> list[str]:
        with self._lock:
            return list(self._refs)

    def _drop(self, name: str) -> None:
        with self._lock:
            self._refs.pop(name, None)
        if self.directory is not None:
            _unlink(self.directory / name)


def _nbytes(buf: Any) -> int:
    if isinstance(buf, (bytes, bytearray)):
        return len(buf)
    inner = getattr(buf, "buffer", None)  # zmq.Frame
    if inner is not None:
        return memoryview(inner).nbytes
    return memoryview(buf).nbytes


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass


def stale_files(directory: Path | None = None) -> list[Path]:
    """Probe and buffer files whose creating process is gone (for ``ipcluster clean``)."""
    directory = directory if directory is not None else shm_dir()
    if directory is None:
        return []
    stale = []
    for path in directory.glob("ipcluster-*"):
        pid = _creator_pid(path)
        if pid is not None and not _pid_alive(pid):
            stale.append(path)
    return stale


def _creator_pid(path: Path) -> int | None:
    name = path.name
    try:
        if name.startswith(BUFFER_PREFIX):
            return int(name[len(BUFFER_PREFIX) :].split("-", 1)[0])
        if name.startswith(PROBE_PREFIX):
            return int(path.read_text("ascii").split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
