"""Keyed hashes that sign messages, and the replay window that rejects repeats.

Two schemes authenticate: ``hmac-sha256`` (the default, in the standard library) and ``blake3`` (keyed
BLAKE3, several times faster on large buffers, needs the ``blake3`` package). ``none`` signs nothing and is
only for clusters started with ``--no-secure``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

try:  # OpenSSL's one-shot HMAC, without hmac.digest's Python-level dispatch (called several times a message)
    from _hashlib import hmac_digest as _hmac_digest
except ImportError:  # pragma: no cover - Python built without OpenSSL
    _hmac_digest = hmac.digest

SCHEMES = ("hmac-sha256", "blake3", "none")
DEFAULT_SCHEME = "hmac-sha256"

# Large buffers are hashed in a worker thread by callers; the hash functions release the GIL past this size.
Buffer = bytes | bytearray | memoryview


class Signer(Protocol):
    scheme: str

    def sign(self, parts: Iterable[Buffer]) -> bytes: ...

    def digest_buffer(self, buf: Buffer) -> str: ...


class HmacSha256Signer:
    scheme = "hmac-sha256"

    def __init__(self, key: bytes) -> None:
        self._key = key
        # HMAC (RFC 2104) from SHA-256 states that already absorbed the padded key: a message then costs two
        # state copies, not the one-shot call's per-call digest lookup and key setup (half the time, and
        # several of these run per message on every hop).
        block = key if len(key) <= 64 else hashlib.sha256(key).digest()
        block = block.ljust(64, b"\0")
        self._inner = hashlib.sha256(block.translate(_IPAD))
        self._outer = hashlib.sha256(block.translate(_OPAD))

    def _hmac(self, data: Buffer) -> hashlib._Hash:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer

    def sign(self, parts: Iterable[Buffer]) -> bytes:
        # One hash over the joined frames: the JSON frames are small, the join is cheaper than more updates.
        return self._hmac(b"".join(parts)).hexdigest().encode("ascii")

    def digest_buffer(self, buf: Buffer) -> str:
        size = memoryview(buf).nbytes
        if size < CHUNKED_FROM:  # never depends on this machine: both ends must compute the same digest
            return self._hmac(buf).hexdigest()
        return self._chunked_digest(memoryview(buf).cast("B"), size)

    def _chunked_digest(self, view: memoryview, size: int) -> str:
        """A big buffer's digest from its chunks' digests, computed on several cores (HMAC itself is serial).

        digest = HMAC(key, b"ipcluster-chunked:<chunk size>:" + HMAC(key, chunk 0) + HMAC(key, chunk 1) ...);
        both ends compute it the same way (docs/protocol.md §1).
        """
        key = self._key
        chunks = [view[i : i + CHUNK] for i in range(0, size, CHUNK)]
        parts = list(_pool().map(lambda chunk: _hmac_digest(key, chunk, "sha256"), chunks))
        return _hmac_digest(key, b"".join([b"ipcluster-chunked:%d:" % CHUNK, *parts]), "sha256").hex()


# HMAC-SHA256 runs at ~1.2 GB/s on one core; buffers from CHUNKED_FROM bytes are hashed in CHUNK pieces on all
# cores (hashlib releases the GIL), which halves a 100 MB push's signing time on two cores.
CHUNKED_FROM = 16 << 20
CHUNK = 8 << 20
_IPAD = bytes(b ^ 0x36 for b in range(256))  # translation tables: the key block xor the HMAC pads
_OPAD = bytes(b ^ 0x5C for b in range(256))
_hash_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _pool() -> ThreadPoolExecutor:
    global _hash_pool
    with _pool_lock:
        if _hash_pool is None:
            _hash_pool = ThreadPoolExecutor(min(8, _cores()), thread_name_prefix="ipcluster-hash")
        return _hash_pool


class Blake3Signer:
    scheme = "blake3"

    def __init__(self, key: bytes) -> None:
        try:
            import blake3
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ValueError(
                "signature scheme 'blake3' needs the blake3 package: pip install blake3, "
                "or use signature_scheme = 'hmac-sha256'"
            ) from exc
        # BLAKE3's keyed mode takes exactly 32 bytes; derive them from the shared secret.
        self._key = hashlib.sha256(b"ipcluster-blake3-key:" + key).digest()
        self._blake3 = blake3.blake3

    def sign(self, parts: Iterable[Buffer]) -> bytes:
        h = self._blake3(key=self._key)
        for part in parts:
            h.update(part)
        return h.hexdigest().encode("ascii")

    def digest_buffer(self, buf: Buffer) -> str:
        size = memoryview(buf).nbytes
        threads = self._blake3.AUTO if size > 8 * 1024 * 1024 else 1
        return self._blake3(buf, key=self._key, max_threads=threads).hexdigest()


class NullSigner:
    """Signs nothing: every message is accepted. Only for --no-secure clusters."""

    scheme = "none"

    def sign(self, parts: Iterable[Buffer]) -> bytes:
        return b""

    def digest_buffer(self, buf: Buffer) -> str:
        return ""


def make_signer(key: bytes | str, scheme: str = DEFAULT_SCHEME) -> Signer:
    """The signer for a scheme named in a connection file.

    An empty key means an unsigned cluster (the seed's ``--no-secure``), whatever the scheme.
    """
    if isinstance(key, str):
        key = key.encode("ascii")
    if scheme not in SCHEMES:
        raise ValueError(f"unknown signature scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    if not key or scheme == "none":
        return NullSigner()
    if scheme == "blake3":
        return Blake3Signer(key)
    return HmacSha256Signer(key)


def blake3_available() -> bool:
    try:
        import blake3  # noqa: F401
    except ImportError:
        return False
    return True


class ReplayWindow:
    """Remembers the last ``size`` signatures accepted, so a repeated one is refused.

    Bounded so a controller that runs for days keeps constant memory; a signature older than the window
    could be replayed, which is why messages also carry a date and a fresh msg_id.
    """

    def __init__(self, size: int = 65536) -> None:
        self.size = size
        self._seen: OrderedDict[bytes, None] = OrderedDict()

    def check_and_add(self, signature: bytes) -> bool:
        """True if the signature is new (and now remembered), False if it is a replay."""
        if not signature:
            return True
        if signature in self._seen:
            return False
        self._seen[signature] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)
