"""The two ends of a checkpoint transfer: source readers and destination writers ("sinks").

A local sink writes a temp file, starts the disk writeback in the background, and renames the
file into place after an fsync (the copier hashes each piece as it passes: one pass). An fsspec
sink writes one object, which appears whole when it closes; on failure the upload is aborted
(or the partial object removed).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from caftm.checkpoint._backend import Backend, FsspecBackend, LocalBackend
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
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._map: mmap.mmap | None = None

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

    def close(self) -> None:
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

    def __init__(self, path: str) -> None:
        self.path = path
        self.temp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._file = open(self.temp, "xb", buffering=0)  # noqa: SIM115 - closed by commit/abort
        self._unflushed = 0
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="caftm-transfer-sync")
        self._flushing: Future[None] | None = None

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
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

    def _settle(self) -> None:
        """Wait for the background writeback; raise what it met."""
        self._flusher.shutdown(wait=True)
        if self._flushing is not None:
            flushing, self._flushing = self._flushing, None
            flushing.result()

    def commit(self) -> None:
        self._settle()
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


def open_sink(dst: Backend, path: str) -> Sink:
    if isinstance(dst, FsspecBackend):
        return FsspecSink(dst, path)
    return LocalSink(path)


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
