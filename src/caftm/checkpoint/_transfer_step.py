"""Copying one checkpoint step to another store: the steps of :mod:`caftm.checkpoint.transfer`.

:class:`StepCopier` keeps destination files that already verify, drops the destination's
manifests, streams and verifies each other data file, then writes the manifests last.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from caftm.checkpoint._backend import Backend, LocalBackend
from caftm.checkpoint._direct import ALIGN, MIN_BYTES
from caftm.checkpoint._transfer_files import (
    FdReader,
    LocalSink,
    Sink,
    SourceDamaged,
    TransferError,
    cause,
    open_sink,
    open_source,
    remove_stale_temps,
)
from caftm.checkpoint.checksum import BLOCK_BYTES, TreeHasher
from caftm.checkpoint.manifest import MANIFEST_NAME, FileEntry, Manifest
from caftm.errors import CheckpointError

__all__ = ["Copied", "Part", "StepCopier"]

_T = TypeVar("_T")
#: blocks of the checksum still hashing while the copy reads on (bounds the buffers in use)
_PENDING_BLOCKS = 2


def _buffered_pieces(reader: object, size: int, chunk_bytes: int) -> Iterator[memoryview]:
    """The first ``size`` bytes of ``reader`` (fewer at its end), read into reused buffers.

    A buffer comes round again only after its block was hashed: the hasher waits so that at
    most :data:`_PENDING_BLOCKS` blocks are pending, and the ring holds one more block's worth.
    """
    per_block = -(-BLOCK_BYTES // chunk_bytes)
    ring: list[bytearray] = []
    count = (_PENDING_BLOCKS + 1) * per_block + 1
    left, index = size, 0
    while left > 0:
        if len(ring) < count:
            ring.append(bytearray(chunk_bytes))
        view = memoryview(ring[index % count])[: min(chunk_bytes, left)]
        index += 1
        got = _read_into(reader, view)
        if not got:
            return
        left -= got
        yield view[:got]


def _read_into(reader: object, view: memoryview) -> int:
    """Read up to ``len(view)`` bytes into ``view``; returns how many (0: end of file)."""
    readinto = getattr(reader, "readinto", None)
    if readinto is not None:
        return int(readinto(view) or 0)
    data = reader.read(view.nbytes)  # type: ignore[attr-defined]
    view[: len(data)] = data
    return len(data)


@dataclass(frozen=True)
class Part:
    """One rank's copy of the step (the whole step without DDP): its manifest and folders."""

    src: Backend
    dst: Backend
    manifest: Manifest
    manifest_bytes: bytes
    src_dir: str
    dst_dir: str


@dataclass(frozen=True)
class Copied:
    """What :meth:`StepCopier.copy` did: bytes and files written, bytes already there."""

    bytes: int
    files: int
    skipped_bytes: int


class StepCopier:
    """Copies one step's files, paced and counted; see :mod:`caftm.checkpoint.transfer`."""

    def __init__(
        self,
        dst_url: str,
        bandwidth_bytes_per_s: float | None,
        chunk_bytes: int,
        on_progress: Callable[[int, int], None] | None,
    ) -> None:
        self.dst_url = dst_url
        self.rate = bandwidth_bytes_per_s
        self.chunk_bytes = chunk_bytes
        self.on_progress = on_progress
        self.step = -1
        self.copied = self.done = self.total = self.files = 0
        self.copy_started = time.monotonic()

    # ------------------------------------------------------------------ the step
    def copy(self, step: int, parts: list[Part]) -> Copied:
        """Copy ``step`` (every rank's ``part``) unless the destination already holds it.

        Raises:
            SourceDamaged: A source file does not match its manifest (nothing left behind).
            CheckpointError: A source file cannot be read, or a copy does not verify.
            TransferError: The destination cannot be written.
        """
        self.step = step
        self.copied = self.files = 0
        self.total = sum(p.manifest.size_bytes + len(p.manifest_bytes) for p in parts)
        self.done = 0
        self.copy_started = time.monotonic()
        todo: list[tuple[Part, FileEntry]] = []
        manifests_there = True
        for part in parts:
            if isinstance(part.dst, LocalBackend):
                remove_stale_temps(part.dst_dir)  # left by a transfer that was killed
            manifests_there &= self._manifest_there(part)
            for entry in part.manifest.files:
                if self._file_there(part, entry):
                    self._advance(entry.size_bytes, copied=False)
                else:
                    todo.append((part, entry))
        if not todo and manifests_there:
            self._advance(sum(len(p.manifest_bytes) for p in parts), copied=False)
            return self._result(parts)
        for part in parts:  # a step being rewritten must not look complete meanwhile
            self._drop_manifest(part)
        try:
            for part, entry in todo:
                self._copy_data(part, entry)
        except SourceDamaged:
            for part in parts:  # this step cannot be completed from here: leave no debris
                with contextlib.suppress(Exception):
                    part.dst.remove_dir(part.dst_dir)
            raise
        for part in parts:
            self._sync(part)
        for part in parts:
            self._write_manifest(part)
        return self._result(parts)

    def _result(self, parts: list[Part]) -> Copied:
        return Copied(self.copied, self.files, self.total - self.copied)

    @staticmethod
    def _rel(part: Part, name: str) -> tuple[str, str]:
        return os.path.basename(part.dst_dir), name

    def _drop_manifest(self, part: Part) -> None:
        dst = part.dst
        path = dst.join(*self._rel(part, MANIFEST_NAME))
        self._dst("delete", path, dst, lambda: dst.remove_file(path))

    def _sync(self, part: Part) -> None:
        dst = part.dst
        self._dst("sync", part.dst_dir, dst, lambda: dst.sync_dir(part.dst_dir))

    def _manifest_there(self, part: Part) -> bool:
        backend = part.dst
        path = backend.join(*self._rel(part, MANIFEST_NAME))
        try:
            return backend.read_bytes(path) == part.manifest_bytes
        except Exception:  # absent or unreadable: it is rewritten, and a real fault shows then
            return False

    def _file_there(self, part: Part, entry: FileEntry) -> bool:
        """Whether the destination already holds ``entry`` (size and sha256 read back)."""
        backend = part.dst
        path = backend.join(*self._rel(part, entry.name))
        try:
            if backend.size(path) != entry.size_bytes:
                return False
            return backend.sha256(path) == entry.sha256
        except Exception:  # absent or unreadable: it is rewritten, and a real fault shows then
            return False

    # ------------------------------------------------------------------ copying
    def _copy_data(self, part: Part, entry: FileEntry) -> None:
        src, dst = part.src, part.dst
        src_path = src.join(os.path.basename(part.src_dir), entry.name)
        dst_path = dst.join(*self._rel(part, entry.name))
        src_where = src.url(src_path)
        try:
            size = src.size(src_path)
        except FileNotFoundError as e:
            raise SourceDamaged(f"{src_where} is missing") from e
        except OSError as e:
            raise CheckpointError(f"cannot read {src_where}: {cause(e)}") from e
        if size != entry.size_bytes:
            raise SourceDamaged(f"{src_where} is {size} bytes, manifest says {entry.size_bytes}")
        self._dst("create", part.dst_dir, dst, lambda: dst.make_dir(part.dst_dir))
        read_back = self._stream(src, src_path, dst, dst_path, entry.size_bytes)
        self.files += 1
        try:
            good = dst.size(dst_path) == entry.size_bytes
            good = good and (read_back or dst.sha256(dst_path)) == entry.sha256
        except (OSError, CheckpointError) as e:
            raise TransferError(
                f"cannot move step {self.step} to {self.dst_url}: cannot read back "
                f"{dst.url(dst_path)}: {cause(e)}"
            ) from e
        if good:
            return
        with contextlib.suppress(Exception):
            dst.remove_file(dst_path)
        try:
            source_good = src.sha256(src_path) == entry.sha256
        except (OSError, CheckpointError) as e:
            raise CheckpointError(f"cannot read {src_where}: {cause(e)}") from e
        if not source_good:
            raise SourceDamaged(f"{src_where} sha256 does not match its manifest")
        raise CheckpointError(
            f"{dst.url(dst_path)} does not match its manifest after copying from {src_where}; "
            f"the destination store {self.dst_url} altered it"
        )

    def _stream(
        self, src: Backend, src_path: str, dst: Backend, dst_path: str, size: int
    ) -> str | None:
        """Copy one file piece by piece; a reader never sees it partial under its final name.

        Returns the sha256 (tree) of the bytes written to a local destination, hashed from each
        piece as it passes (one pass: no read-back); None for other destinations (they are
        read back after they close: an object store is not trusted to keep what it was sent).
        """
        # past the page cache: a large local file, in whole disk blocks but the last
        direct = (
            isinstance(src, LocalBackend) and size >= MIN_BYTES and not self.chunk_bytes % ALIGN
        )
        with (
            open_source(src, src_path) as reader,
            self._sink(dst, dst_path, direct=direct) as sink,
        ):
            hasher = None
            if isinstance(sink, LocalSink):
                hasher = TreeHasher(max_pending_blocks=_PENDING_BLOCKS)
            pieces: Iterator[memoryview] | None = None
            if isinstance(reader, FdReader):
                # a large local file past the page cache, read and written (each buffer comes
                # round again only after its block was hashed)
                ring = (_PENDING_BLOCKS + 1) * -(-BLOCK_BYTES // self.chunk_bytes) + 1
                pieces = reader.direct_pieces(size, self.chunk_bytes, ring) if direct else None
                if pieces is None:
                    pieces = reader.pieces(size, self.chunk_bytes)
            else:
                pieces = _buffered_pieces(reader, size, self.chunk_bytes)
            left = size
            for piece in pieces:
                if hasher is not None:
                    hasher.update(piece)
                self._dst("write", dst_path, dst, functools.partial(sink.write, piece))
                left -= piece.nbytes
                self._advance(piece.nbytes, copied=True)
            if left:
                raise SourceDamaged(f"{src.url(src_path)} ended {left} bytes early")
            return None if hasher is None else hasher.hexdigest()

    @contextlib.contextmanager
    def _sink(self, dst: Backend, path: str, *, direct: bool = False) -> Iterator[Sink]:
        """A destination file, committed under ``path`` only when the block ends cleanly."""
        sink = self._dst("open", path, dst, lambda: open_sink(dst, path, direct=direct))
        try:
            yield sink
            self._dst("finish", path, dst, sink.commit)
        except BaseException:
            sink.abort()
            raise

    def _write_manifest(self, part: Part) -> None:
        dst = part.dst
        path = dst.join(*self._rel(part, MANIFEST_NAME))
        self._dst("create", part.dst_dir, dst, lambda: dst.make_dir(part.dst_dir))
        with self._sink(dst, path) as sink:
            self._dst("write", path, dst, lambda: sink.write(part.manifest_bytes))
        self._sync(part)
        self.files += 1
        self._advance(len(part.manifest_bytes), copied=True)
        read_back = self._dst("read back", path, dst, lambda: dst.read_bytes(path))
        if read_back != part.manifest_bytes:
            with contextlib.suppress(Exception):
                dst.remove_file(path)
            raise CheckpointError(
                f"{dst.url(path)} does not match the source manifest on read-back"
            )

    def _dst(self, action: str, path: str, dst: Backend, call: Callable[[], _T]) -> _T:
        """Run a destination call; any failure becomes a TransferError naming the store."""
        try:
            return call()
        except (TransferError, SourceDamaged):
            raise
        except Exception as e:
            raise TransferError(
                f"cannot move step {self.step} to {self.dst_url}: cannot {action} "
                f"{dst.url(path)}: {cause(e)}"
            ) from e

    def _advance(self, n: int, *, copied: bool) -> None:
        """Count ``n`` bytes done; when they were copied, sleep to honour the bandwidth cap."""
        self.done += n
        if copied:
            self.copied += n
            if self.rate is not None:
                ahead_s = self.copied / self.rate - (time.monotonic() - self.copy_started)
                if ahead_s > 0:
                    time.sleep(ahead_s)
        if self.on_progress is not None:
            self.on_progress(self.done, self.total)
