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

import logging
import mmap
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

SHM_DIR_ENV = "IPCLUSTER_SHM_DIR"
DEFAULT_THRESHOLD = 1 << 20  # buffers from 1 MiB go through shared memory
REST_AFTER_FAILURE = 30.0  # seconds without shared memory after a write failed
PROBE_PREFIX = "ipcluster-engine-"
CLIENT_PROBE_PREFIX = "ipcluster-client-"
_IDENT = re.compile(r"[0-9A-Za-z_-]{1,128}")
BUFFER_PREFIX = "ipcluster-buf-"
_NAME = re.compile(r"^ipcluster-buf-[0-9]+-[0-9a-f]+-[0-9]+$")
# Private: an engine's writes to its array stay its own (copy-on-write, page by page). Not MAP_POPULATE: on
# a writable private mapping it copies every page up front; lazy read faults map the shared pages in batches.
_MAP_FLAGS = mmap.MAP_PRIVATE


T = TypeVar("T")
log = logging.getLogger("ipcluster.shm")


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
    return _advertise(PROBE_PREFIX, engine_uuid, f"{engine_uuid} {os.getpid()}")


def advertise_client(session: str, threshold: int) -> Path | None:
    """Create a client's probe: engines on this host may answer it with big results in shared memory."""
    if threshold <= 0:
        return None
    return _advertise(CLIENT_PROBE_PREFIX, session, f"{session} {os.getpid()} {threshold}")


def _advertise(prefix: str, ident: str, content: str) -> Path | None:
    directory = shm_dir()
    if directory is None:
        return None
    path = directory / f"{prefix}{ident}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, f"{content}\n".encode("ascii"))
        finally:
            os.close(fd)
    except OSError:
        return None
    return path


def read_probe(directory: Path | None, prefix: str, ident: str) -> list[str] | None:
    """The fields of a peer's probe when it is ours to trust (a regular file of our user naming ``ident``)."""
    if directory is None or not _IDENT.fullmatch(ident):
        return None
    path = directory / f"{prefix}{ident}"
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            return None
        fields = path.read_text("ascii").split()
    except (OSError, UnicodeDecodeError):
        return None
    return fields if fields and fields[0] == ident else None


def withdraw(path: Path | None) -> None:
    if path is not None:
        _unlink(path)


def attach(header: dict[str, Any], buffers: list[Any], unlink: bool = False) -> None:
    """Replace the empty frames of shared-memory buffers named in ``header['shm']`` by their mapped bytes.

    Call it after the header's signature was verified and before the buffer digests are checked: the digests
    then cover the mapped bytes. ``unlink`` removes each file once mapped (a client taking an engine's
    answer: it is the file's only reader). Raises ShmError naming the buffer that cannot be mapped.
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
        if unlink:
            _unlink(directory / entry["name"])


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
        self._token = token
        self._prefix = f"{BUFFER_PREFIX}{os.getpid()}-{token}-"
        self._counter = 0
        self._lock = threading.Lock()
        self._resting_until = 0.0  # after a failed write (full directory), frames only until then
        self._local: dict[str, bool] = {}  # engine uuid -> probe seen
        self._clients: dict[str, Any] = {}  # client session -> (pid, threshold) or None
        self._holders: dict[str, list[str]] = {}  # msg_id -> buffer files it keeps alive
        self._refs: dict[str, int] = {}  # buffer file -> msg_ids still holding it

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def wants(self, buffers: Iterable[Any], threshold: int | None = None) -> bool:
        """True when some buffer is big enough to be worth a file (and the last write did not fail lately)."""
        if self.directory is None or (self._resting_until and time.monotonic() < self._resting_until):
            return False
        threshold = self.threshold if threshold is None else threshold
        return any(nbytes(b) >= threshold for b in buffers)

    def is_local(self, engine_uuid: str) -> bool:
        """True when that engine's probe is in our shared-memory directory and owned by our user."""
        known = self._local.get(engine_uuid)
        if known is None:
            known = self._local[engine_uuid] = self._probe(engine_uuid)
        return known

    def _probe(self, engine_uuid: str) -> bool:
        return read_probe(self.directory, PROBE_PREFIX, engine_uuid) is not None

    def export(
        self, buffers: list[Any], owner_pid: int | None = None, threshold: int | None = None
    ) -> tuple[list[Any], list[dict[str, Any] | None]]:
        """(frames, shm entries): each buffer of ``threshold`` bytes or more (default: ours) written to a new
        file, its frame left empty.

        ``owner_pid`` is the process that will remove the file (default: this one); its pid is in the name.
        """
        frames: list[Any] = []
        entries: list[dict[str, Any] | None] = []
        assert self.directory is not None
        threshold = self.threshold if threshold is None else threshold
        try:
            for buf in buffers:
                size = nbytes(buf)
                if size < threshold:
                    frames.append(buf)
                    entries.append(None)
                    continue
                name = self._write(buf, size, owner_pid)
                frames.append(b"")
                entries.append({"name": name, "size": size})
        except OSError as exc:  # typically a full /dev/shm (64 MB by default in a container)
            self.discard(entries)
            self._resting_until = time.monotonic() + REST_AFTER_FAILURE
            log.warning(
                "shared memory unusable for %g s, sending buffers through the sockets: %s",
                REST_AFTER_FAILURE,
                exc,
            )
            raise
        return frames, entries

    def export_while(
        self,
        buffers: list[Any],
        work: Callable[[], T],
        owner_pid: int | None = None,
        threshold: int | None = None,
    ) -> tuple[tuple[list[Any], list[Any]], T] | None:
        """``export(buffers)`` on a worker thread while ``work()`` (hashing the same buffers) runs here.

        Both release the GIL on big buffers, so on two cores the copy and the hash overlap. None when the
        directory could not take the files (full or gone; logged): the caller sends the buffers in frames.
        """
        box: list[Any] = []

        def write() -> None:
            try:
                box.append(self.export(buffers, owner_pid, threshold))
            except BaseException as exc:  # re-raised in the caller
                box.append(exc)

        writer = threading.Thread(target=write, name="ipcluster-shm-export", daemon=True)
        writer.start()
        try:
            result = work()
        except BaseException:
            writer.join()
            if not isinstance(box[0], BaseException):
                self.discard(box[0][1])
            raise
        writer.join()
        if isinstance(box[0], OSError):
            return None
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0], result

    def _write(self, buf: Any, size: int, owner_pid: int | None = None) -> str:
        with self._lock:
            self._counter += 1
            if owner_pid is None:
                name = f"{self._prefix}{self._counter}"
                self._refs[name] = 0
            else:  # the reader owns it: not ours to track
                name = f"{BUFFER_PREFIX}{owner_pid}-{self._token}-{self._counter}"
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

    def discard(self, entries: list[dict[str, Any] | None]) -> None:
        """Unlink files written for a message that will not be sent."""
        for entry in entries:
            if entry is not None:
                self._drop(entry["name"])

    def client_threshold(self, session: str) -> tuple[int, int] | None:
        """(pid, threshold) of a client on this host that accepts big answers in shared memory, or None."""
        known = self._clients.get(session, 0)
        if known == 0:
            fields = read_probe(self.directory, CLIENT_PROBE_PREFIX, session)
            try:
                known = (int(fields[1]), int(fields[2])) if fields else None
            except (IndexError, ValueError):
                known = None
            if len(self._clients) > 10000:
                self._clients.clear()
            self._clients[session] = known
        return known

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


def nbytes(buf: Any) -> int:
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
        if name.startswith((PROBE_PREFIX, CLIENT_PROBE_PREFIX)):
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
