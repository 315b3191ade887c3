"""The two ends of a checkpoint transfer: source readers and destination writers ("sinks").

A local sink writes a temp file, reads each appended range back in a reader thread and hashes
it in the checksum pool while the copy goes on, starts the disk writeback in the background,
and renames the file into place after an fsync. An fsspec sink writes one object, which appears
whole when it closes; on failure the upload is aborted (or the partial object removed).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from caftm.checkpoint._backend import Backend, FsspecBackend, LocalBackend
from caftm.checkpoint.checksum import TreeHasher
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
    """A local source file read with the OS (kernel copy possible)."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()

    def fileno(self) -> int:
        return self._file.fileno()

    def read(self, n: int) -> bytes:
        return self._file.read(n) or b""

    def close(self) -> None:
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

    Each appended range is read back from the file by a reader thread and hashed in the
    checksum pool, pipelined with the copy; the file is written back to disk in the background
    every :data:`_FLUSH_EVERY_BYTES`, so the final fsync has little left to wait for.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.temp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._file = open(self.temp, "xb+", buffering=0)  # noqa: SIM115 - closed by commit/abort
        self._hasher = TreeHasher(max_pending_blocks=2)
        self._appended = 0
        self._unflushed = 0
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="caftm-transfer-readback")
        self._flusher = ThreadPoolExecutor(1, thread_name_prefix="caftm-transfer-sync")
        self._reads: list[Future[None]] = []
        self._flushing: Future[None] | None = None

    def fileno(self) -> int:
        return self._file.fileno()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view.nbytes:
            view = view[self._file.write(view) or 0 :]
        self.appended(len(data))

    def appended(self, n: int) -> None:
        """Queue the read-back of the ``n`` bytes just added at the end of the file."""
        pending = []
        for read in self._reads:
            if read.done():
                read.result()  # raises what the reader met
            else:
                pending.append(read)
        self._reads = pending
        self._reads.append(self._reader.submit(self._read_back, self._appended, n))
        self._appended += n
        self._unflushed += n
        if self._unflushed >= _FLUSH_EVERY_BYTES and (
            self._flushing is None or self._flushing.done()
        ):
            self._flushing = self._flusher.submit(os.fdatasync, self._file.fileno())
            self._unflushed = 0

    def _read_back(self, offset: int, n: int) -> None:
        while n > 0:
            data = os.pread(self._file.fileno(), n, offset)
            if not data:
                raise OSError(errno.EIO, f"{n} bytes just written are missing")
            self._hasher.update(data)
            offset += len(data)
            n -= len(data)

    def sha256(self) -> str:
        """The checksum of what was read back (waits for the reader and the hashing pool)."""
        return self._hasher.hexdigest()

    def _settle(self) -> None:
        """Wait for the reader and flusher threads; raise the first error either met."""
        self._reader.shutdown(wait=True)
        self._flusher.shutdown(wait=True)
        reads, self._reads = self._reads, []
        for read in reads:
            read.result()
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

    def write(self, data: bytes) -> None:
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
