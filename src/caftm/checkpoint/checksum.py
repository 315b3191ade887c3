"""The one checksum of checkpoint files: a sha256 tree over 64 MiB blocks, hashed in parallel.

A file's checksum is the sha256 of each ``BLOCK_BYTES`` block of it, then the sha256 of those
block digests concatenated; a file of one block (or empty) has the plain sha256 of its bytes.
Blocks are independent, so several threads hash them at once (hashlib releases the GIL): on a
2-core machine one thread hashes about 1.8 GB/s, less than the disk writes, so a single running
sha256 would bound the checkpoint's write speed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from threading import Lock

__all__ = ["BLOCK_BYTES", "CHECKSUM_NAME", "TreeHasher", "tree_sha256"]

BLOCK_BYTES = 64 * 2**20
CHECKSUM_NAME = "sha256-tree-64MiB"
_MAX_PENDING_BLOCKS = 4  # bounds memory when blocks arrive faster than they are hashed

_pool: ThreadPoolExecutor | None = None
_pool_lock = Lock()


def _forget_pool_in_child() -> None:
    """A forked child inherits the pool but not its threads: work sent there would never run."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, Lock()


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            workers = max(2, min(8, os.cpu_count() or 2))
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="caftm-sha256")
        return _pool


def _hash_pieces(pieces: Sequence[memoryview | bytes]) -> bytes:
    hasher = hashlib.sha256()
    for piece in pieces:
        hasher.update(piece)
    return hasher.digest()


class TreeHasher:
    """Incremental :data:`CHECKSUM_NAME` of a byte stream; full blocks hash in a thread pool.

    The pieces given to :meth:`update` must stay unchanged until :meth:`hexdigest` returns.

    Args:
        max_pending_blocks: wait in :meth:`update` while this many blocks are still hashing
            (bounds memory when the pieces are freshly read; None when they are in memory).
    """

    def __init__(self, *, max_pending_blocks: int | None = None) -> None:
        self._max_pending = max_pending_blocks
        self._blocks: list[Future[bytes]] = []
        self._pieces: list[memoryview | bytes] = []
        self._filled = 0

    def update(self, data: memoryview | bytes) -> None:
        """Append ``data`` to the stream."""
        view = memoryview(data).cast("B")
        while view.nbytes:
            take = min(view.nbytes, BLOCK_BYTES - self._filled)
            self._pieces.append(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == BLOCK_BYTES:
                self._submit()

    def _submit(self) -> None:
        if self._max_pending is not None:
            pending = [f for f in self._blocks if not f.done()]
            if len(pending) >= self._max_pending:
                pending[0].result()
        self._blocks.append(_executor().submit(_hash_pieces, self._pieces))
        self._pieces, self._filled = [], 0

    def hexdigest(self) -> str:
        """The checksum of everything given so far (waits for the pool)."""
        digests = [f.result() for f in self._blocks]
        if self._pieces or not digests:
            digests.append(_hash_pieces(self._pieces))
        if len(digests) == 1:
            return digests[0].hex()
        return hashlib.sha256(b"".join(digests)).hexdigest()


def tree_sha256(chunks: Iterable[memoryview | bytes], *, streaming: bool = False) -> str:
    """The checksum of the concatenation of ``chunks`` (``streaming``: read as they come)."""
    hasher = TreeHasher(max_pending_blocks=_MAX_PENDING_BLOCKS if streaming else None)
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()
