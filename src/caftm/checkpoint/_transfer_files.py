"""The two ends of a checkpoint transfer: source readers and destination writers ("sinks").

A local sink writes a temp file, starts the disk writeback in the background, and renames the
file into place after an fsync (the copier hashes each piece as it passes: one pass). An fsspec
sink writes one object, which appears whole when it closes; on failure the upload is aborted
(or the partial object removed).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from caftm.checkpoint._backend import Backend, FsspecBackend, LocalBackend
from caftm.checkpoint._direct import (
    ALIGN,
    MIN_BYTES,
    address,
    aligned_view,
    open_direct,
    pwrite_all,
)
from caftm.errors import CheckpointError, ExecutorError

__all__ = [
    "FdReader",
    "FsspecSink",
    "LocalSink",
    "Sink",
    "SourceDamaged",
    "TransferError",
    "cause",
    "open_sink",
    "open_source",
    "remove_stale_temps",
]

logger = logging.getLogger(__name__)

_TEMP_FILE = re.compile(r"\.tmp-(\d+)-[0-9a-f]{8}$")
_FLUSH_EVERY_BYTES = 128 * 2**20  # start the disk writeback of a local file this often
_SCRATCH_BYTES = 8 * 2**20  # a direct sink's buffer for pieces not aligned in memory


class TransferError(ExecutorError):
    """The destination store could not take the checkpoint (full, unwritable, access denied).

    The message names the destination URL and the cause. Nothing at the source was changed.
    """


class SourceDamaged(Exception):
    """A source file of the candidate step does not match its manifest."""


class FdReader:
    """A local source file, read through a memory map: its pieces are hashed and written
    straight from the page cache (no copy into a buffer first)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._map: mmap.mmap | None = None
        self._direct_fd: int | None = None

    def fileno(self) -> int:
        return self._file.fileno()

    def read(self, n: int) -> bytes:
        return self._file.read(n) or b""

    def readinto(self, buffer: memoryview) -> int:
        return self._file.readinto(buffer) or 0

    def pieces(self, size: int, chunk_bytes: int) -> Iterator[memoryview]:
        """The first ``size`` bytes (fewer when the file is shorter) in ``chunk_bytes`` views."""
        if size <= 0:
            return
        self._map = mmap.mmap(self.fileno(), 0, access=mmap.ACCESS_READ)
        self._map.madvise(mmap.MADV_SEQUENTIAL)
        view = memoryview(self._map)[:size]
        for start in range(0, view.nbytes, chunk_bytes):
            yield view[start : start + chunk_bytes]

    def direct_pieces(self, size: int, chunk_bytes: int, ring: int) -> Iterator[memoryview] | None:
        """The first ``size`` bytes read past the page cache into a ring of ``ring`` aligned
        buffers of ``chunk_bytes`` (a buffer comes round again ``ring`` pieces later); None
        where the file is small, ``chunk_bytes`` no multiple of the disk block, or the
        filesystem refuses O_DIRECT."""
        if size < MIN_BYTES or chunk_bytes % ALIGN:
            return None
        self._direct_fd = open_direct(self._path, os.O_RDONLY)
        if self._direct_fd is None:
            return None
        return self._direct(self._direct_fd, size, chunk_bytes, ring)

    @staticmethod
    def _direct(fd: int, size: int, chunk_bytes: int, ring: int) -> Iterator[memoryview]:
        buffers: list[memoryview] = []
        offset = 0
        while offset < size:
            if len(buffers) < ring:
                buffers.append(aligned_view(chunk_bytes))
            view = buffers[(offset // chunk_bytes) % ring]
            length = min(chunk_bytes, -(-(size - offset) // ALIGN) * ALIGN)
            got = min(os.preadv(fd, [view[:length]], offset), size - offset)
            if got <= 0:
                return
            yield view[:got]
            offset += got
            if got % ALIGN and offset < size:  # it ended early: the caller counts what is left
                return

    def close(self) -> None:
        if self._direct_fd is not None:
            os.close(self._direct_fd)
            self._direct_fd = None
        if self._map is not None:
            with contextlib.suppress(BufferError):  # views still held: unmapped when freed
                self._map.close()
        self._file.close()


@contextlib.contextmanager
def open_source(src: Backend, path: str) -> Iterator[FdReader | BinaryIO]:
    where = src.url(path)
    try:
        reader: FdReader | BinaryIO
        if isinstance(src, LocalBackend):
            reader = FdReader(path)
        else:
            assert isinstance(src, FsspecBackend)
            reader = src.fs.open(path, "rb")
    except FileNotFoundError as e:
        raise SourceDamaged(f"{where} is missing") from e
    except Exception as e:
        raise CheckpointError(f"cannot read {where}: {cause(e)}") from e
    try:
        yield reader
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {where}: {cause(e)}") from e
    finally:
        with contextlib.suppress(Exception):
            reader.close()


class LocalSink:
    """A local file written under a temp name, fsynced, then renamed into place.

    The file is written back to disk in the background every :data:`_FLUSH_EVERY_BYTES`, so
    the final fsync has little left to wait for. The copier hashes the pieces it writes.
    """

    def __init__(self, path: str, *, direct: bool = False) -> None:
        self.path = path
        self.temp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        fd = open_direct(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL) if direct else None
        #: written past the page cache (no writeback to start; the size is cut at the end)
        self.direct = fd is not None
        if fd is None:
            self._file = open(self.temp, "xb", buffering=0)  # noqa: SIM115 - closed by commit/abort
        else:
            self._file = open(fd, "wb", buffering=0)  # noqa: SIM115 - closed by commit/abort
        self._size = 0
        self._scratch: memoryview | None = None
        self._unflushed = 0
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="caftm-transfer-sync")
        self._flushing: Future[None] | None = None

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data).cast("B")
        if self.direct:
            self._write_direct(view)
            return
        size = view.nbytes
        while view.nbytes:
            view = view[self._file.write(view) or 0 :]
        self._unflushed += size
        if self._unflushed >= _FLUSH_EVERY_BYTES and (
            self._flushing is None or self._flushing.done()
        ):
            if self._flushing is not None:
                self._flushing.result()  # raises what the last writeback met
            self._flushing = self._flusher.submit(os.fdatasync, self._file.fileno())
            self._unflushed = 0

    def _write_direct(self, view: memoryview) -> None:
        """Write at the end of a direct file: a whole number of disk blocks straight from
        ``view`` when it is aligned (else through a scratch buffer); a last, shorter block
        padded (cut at :meth:`commit`). Only the last piece may end off a block."""
        if self._size % ALIGN:
            raise OSError(errno.EINVAL, "a direct write after the file's last, partial block")
        while view.nbytes:
            take = view.nbytes - view.nbytes % ALIGN or view.nbytes
            piece = view[:take]
            if take % ALIGN or address(piece) % ALIGN:
                take = min(take, _SCRATCH_BYTES)
                if self._scratch is None:
                    self._scratch = aligned_view(_SCRATCH_BYTES)
                padded = -(-take // ALIGN) * ALIGN
                self._scratch[:take] = view[:take]
                self._scratch[take:padded] = bytes(padded - take)
                piece = self._scratch[:padded]
            pwrite_all(self._file.fileno(), piece, self._size)
            self._size += take
            view = view[take:]

    def _settle(self) -> None:
        """Wait for the background writeback; raise what it met."""
        self._flusher.shutdown(wait=True)
        if self._flushing is not None:
            flushing, self._flushing = self._flushing, None
            flushing.result()

    def commit(self) -> None:
        self._settle()
        if self.direct:
            os.ftruncate(self._file.fileno(), self._size)
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.temp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._settle()
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.temp)


class FsspecSink:
    """An fsspec object written in one upload; it appears whole when closed."""

    def __init__(self, backend: FsspecBackend, path: str) -> None:
        self.fs = backend.fs
        self.path = path
        self._file = self.fs.open(path, "wb")

    def write(self, data: bytes | memoryview) -> None:
        self._file.write(data)

    def commit(self) -> None:
        self._file.close()

    def abort(self) -> None:
        from fsspec.spec import AbstractBufferedFile

        if isinstance(self._file, AbstractBufferedFile):  # s3fs & co: abort the upload
            with contextlib.suppress(Exception):
                self._file.discard()
            self._file.closed = True
            return
        with contextlib.suppress(Exception):  # closing commits: remove the partial object
            self._file.close()
        with contextlib.suppress(Exception):
            self.fs.rm_file(self.path)


Sink = LocalSink | FsspecSink


def open_sink(dst: Backend, path: str, *, direct: bool = False) -> Sink:
    """Where a file is copied to (``direct``: a local file written past the page cache,
    where its filesystem allows)."""
    if isinstance(dst, FsspecBackend):
        return FsspecSink(dst, path)
    return LocalSink(path, direct=direct)


def remove_stale_temps(directory: str) -> None:
    """Delete temp files left by a transfer whose process died (local destinations)."""
    with contextlib.suppress(OSError):
        for name in os.listdir(directory):
            match = _TEMP_FILE.search(name)
            if match is None or _alive(int(match.group(1))):
                continue
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))
                logger.debug("removed stale temp file %s/%s", directory, name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def cause(error: BaseException) -> str:
    """One line describing ``error`` (the strerror of OS errors, else type and message)."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror
    elif isinstance(error, CheckpointError):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())
