"""Direct I/O for large local checkpoint files: written and read past the page cache.

A buffered ``write()`` of a 1 GB tensors file makes the kernel allocate, fill and account a
page-cache page per 4 KiB: 1–3 CPU-s per GB on the project's 2-core VMs (fresh guest memory is
dear there), and a cold buffered read as much again. ``O_DIRECT`` moves the same bytes between
the process's memory and the disk for a few hundredths of a CPU-second, leaving the CPUs to
sha256. Files of at least :data:`MIN_BYTES` take this path where the filesystem allows it
(``open`` with ``O_DIRECT`` refused, as on tmpfs: the buffered path); durability is unchanged
(the file is still fsynced and renamed into place by its caller).

Writes go through two page-aligned bounce buffers (tensor memory is not page-aligned): one is
filled while the other is written by a helper thread. Reads land in one page-aligned buffer and
are hashed block by block as they arrive.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from caftm.checkpoint.checksum import TreeHasher

__all__ = [
    "ALIGN",
    "MIN_BYTES",
    "address",
    "aligned_buffer",
    "aligned_view",
    "open_direct",
    "pwrite_all",
    "read_direct",
    "write_direct",
]

#: alignment of O_DIRECT buffers, offsets and lengths (the largest logical block in use)
ALIGN = 4096
#: files smaller than this are written and read through the page cache
MIN_BYTES = 32 * 2**20
_CHUNK_BYTES = 16 * 2**20
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def aligned_buffer(nbytes: int) -> torch.Tensor:
    """A uint8 CPU tensor of ``nbytes`` (rounded up to :data:`ALIGN`) at a page-aligned address."""
    size = -(-nbytes // ALIGN) * ALIGN
    raw = torch.empty(size + ALIGN, dtype=torch.uint8)
    start = -raw.data_ptr() % ALIGN
    return raw[start : start + size]


def open_direct(path: str, flags: int, mode: int = 0o644) -> int | None:
    """``os.open`` with ``O_DIRECT``; None where the platform or filesystem refuses it.

    Raises:
        OSError: any other failure (missing file, no permission, ...).
    """
    if not _O_DIRECT:
        return None
    try:
        return os.open(path, flags | _O_DIRECT, mode)
    except OSError as e:
        if e.errno == errno.EINVAL:
            return None
        raise


def _view(tensor: torch.Tensor) -> memoryview:
    return memoryview(tensor.numpy()).cast("B")  # type: ignore[arg-type]


def aligned_view(nbytes: int) -> memoryview:
    """A writable page-aligned memoryview of ``nbytes`` (rounded up to :data:`ALIGN`)."""
    return _view(aligned_buffer(nbytes))


def address(view: memoryview) -> int:
    """Where ``view``'s first byte lies in memory."""
    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data) if view.nbytes else 0


def pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    """Write all of ``view`` at ``offset`` of a direct file (aligned address and length)."""
    while view.nbytes:
        written = os.pwrite(fd, view, offset)
        if written <= 0 or (written % ALIGN and written != view.nbytes):
            raise OSError(errno.EIO, f"short direct write ({written} of {view.nbytes} bytes)")
        view, offset = view[written:], offset + written


def write_direct(fd: int, buffers: Sequence[memoryview]) -> int:
    """Write ``buffers`` one after the other to ``fd`` (opened with :func:`open_direct`), and
    cut the file to their exact size; returns it. Not fsynced.

    Raises:
        OSError: the write failed.
    """
    bounces = [aligned_buffer(_CHUNK_BYTES) for _ in range(2)]
    views = [_view(b) for b in bounces]
    pending: list[Future[None] | None] = [None, None]
    total = filled = offset = 0
    current = 0
    with ThreadPoolExecutor(1, thread_name_prefix="caftm-direct-write") as writer:

        def flush(length: int) -> None:
            nonlocal current, filled, offset
            pending[current] = writer.submit(pwrite_all, fd, views[current][:length], offset)
            offset += length
            current, filled = 1 - current, 0
            waiting = pending[current]
            if waiting is not None:
                waiting.result()  # that buffer is free again
                pending[current] = None

        for buffer in buffers:
            source = buffer.cast("B") if buffer.format != "B" else buffer
            start = 0
            while start < source.nbytes:
                take = min(source.nbytes - start, _CHUNK_BYTES - filled)
                views[current][filled : filled + take] = source[start : start + take]
                filled += take
                start += take
                total += take
                if filled == _CHUNK_BYTES:
                    flush(_CHUNK_BYTES)
        if filled:
            flush(-(-filled // ALIGN) * ALIGN)  # the tail, padded to a block; cut below
        for future in pending:
            if future is not None:
                future.result()
    os.ftruncate(fd, total)
    return total


def read_direct(fd: int, size: int, hasher: TreeHasher) -> torch.Tensor:
    """Read the first ``size`` bytes of ``fd`` (opened with :func:`open_direct`) into a fresh
    page-aligned buffer, feeding ``hasher`` each piece as it arrives (its blocks hash in the
    pool while the next ones are read); returns the buffer, exactly ``size`` long.

    Raises:
        OSError: the read failed, or the file ended before ``size`` bytes.
    """
    buffer = aligned_buffer(size)
    view = _view(buffer)
    offset = 0
    while offset < size:
        length = min(_CHUNK_BYTES, view.nbytes - offset)
        got = os.preadv(fd, [view[offset : offset + length]], offset)
        if got <= 0:
            raise OSError(errno.EIO, f"file ended after {offset} of {size} bytes")
        hasher.update(view[offset : min(offset + got, size)])
        offset += got
        if offset < size and got % ALIGN:  # a short read mid-file: it ended early
            raise OSError(errno.EIO, f"file ended after {offset} of {size} bytes")
    return buffer[:size]
