"""Moving a checkpoint between two sites' stores: the newest complete step, resumable, verified.

:func:`transfer_latest` copies the newest step that is complete at the source (on every rank
sub-store ``<root>/rank-NNNNN/`` when the job ran under DDP) to the same layout at the destination::

    result = transfer_latest("/sites/KR/job-7", "s3://fr-bucket/job-7",
                             dst_storage_options={"client_kwargs": {"endpoint_url": ...}})
    if result is not None:
        print(result.step, result.bytes, result.seconds)

How a step moves, and why each file is safe to trust:

1. Destination files that already match the source manifest (size and sha256, read back from
   the destination) are kept: an interrupted transfer resumes file by file.
2. The destination's manifests of the step are deleted before any of its files is rewritten.
3. Each other data file is streamed in ``chunk_bytes`` pieces (never whole in memory) to a temp
   name that is fsynced and renamed (local), or to an object that appears whole on close
   (object stores), then read back from the destination and checked against the manifest. A
   mismatch whose cause is the source marks that step damaged (an older complete step is tried);
   otherwise it is a :class:`~caftm.errors.CheckpointError` about the destination.
4. Only when every rank's data files verify are the manifests written, byte for byte the
   source's, so ``CheckpointStore.latest()`` at the destination never sees a half-copied step.
5. ``prune_source=True`` then deletes the source's copy of the step.

Errors: the source has steps but none complete, or a source file cannot be read:
:class:`~caftm.errors.CheckpointError` naming the source. The destination cannot be written
(full, read-only, no access, no bucket): :class:`TransferError` naming the destination and the
cause. A file that does not verify at the destination after copying: ``CheckpointError``. The
source is never written to, except by ``prune_source`` after success.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from caftm.checkpoint._backend import Backend, FsspecBackend, LocalBackend, open_backend
from caftm.checkpoint.manifest import MANIFEST_NAME, FileEntry, Manifest
from caftm.checkpoint.store import CheckpointStore
from caftm.errors import CheckpointError, ConfigError, ExecutorError
from caftm.jobs._transfer_files import (
    FdReader,
    LocalSink,
    Sink,
    SourceDamaged,
    cause,
    open_sink,
    open_source,
    remove_stale_temps,
)

__all__ = ["TransferError", "TransferResult", "transfer_latest"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_RANK_DIR = re.compile(r"^rank-(\d{5,})$")
_STEP_DIR = re.compile(r"^step-(\d{9,})$")
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF}


class TransferError(ExecutorError):
    """The destination store could not take the checkpoint (full, unwritable, access denied).

    The message names the destination URL and the cause. Nothing at the source was changed.
    """


@dataclass(frozen=True, slots=True)
class TransferResult:
    """What one :func:`transfer_latest` call moved.

    Attributes:
        step: The checkpoint step moved.
        bytes: Bytes copied by this call (0 when the destination already had the step).
        seconds: Wall time of this call, in seconds.
        files: Files copied by this call (data files and manifests, all ranks).
        skipped_bytes: Bytes already at the destination and verified there (a resumed transfer).
        src_url: The source store's root.
        dst_url: The destination store's root.
        ranks: Rank sub-stores moved (1 without DDP).
        pruned_source: Whether the source's copy of the step was deleted.
    """

    step: int
    bytes: int
    seconds: float
    files: int
    skipped_bytes: int
    src_url: str
    dst_url: str
    ranks: int = 1
    pruned_source: bool = False

    @property
    def bytes_per_s(self) -> float:
        """Average copy rate of this call, in bytes per second (0 when nothing was copied)."""
        return self.bytes / self.seconds if self.bytes and self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Rank:
    """One rank sub-store (or the whole store without DDP) on both sides."""

    name: str | None  # "rank-00001", or None for a single store
    src: Backend
    dst: Backend
    src_store: CheckpointStore


@dataclass(frozen=True)
class _Part:
    """One rank's copy of the candidate step: its manifest, as bytes and parsed."""

    rank: _Rank
    manifest: Manifest
    manifest_bytes: bytes
    src_dir: str
    dst_dir: str


def transfer_latest(
    src_url: str,
    dst_url: str,
    *,
    bandwidth_bytes_per_s: float | None = None,
    prune_source: bool = False,
    chunk_bytes: int = 8 << 20,
    on_progress: Callable[[int, int], None] | None = None,
    src_storage_options: dict[str, Any] | None = None,
    dst_storage_options: dict[str, Any] | None = None,
    src_filesystem: Any = None,
    dst_filesystem: Any = None,
) -> TransferResult | None:
    """Copy the newest complete checkpoint step from one store to another, verified.

    Args:
        src_url: Source store root (local path or fsspec URL); DDP jobs hold ``rank-NNNNN/``
            sub-stores there, and a step is complete only when every rank has it complete.
        dst_url: Destination store root; the same layout is written there.
        bandwidth_bytes_per_s: Cap on the average copy rate, in bytes per second (emulates a
            wide-area link); None copies as fast as the stores allow.
        prune_source: Delete the source's copy of the step once the destination verifies.
        chunk_bytes: Piece size of the streamed copy, in bytes (memory used per file).
        on_progress: Called after each piece with (bytes done, total bytes of the step);
            bytes already at the destination count as done.
        src_storage_options: fsspec options of the source (e.g. an S3 endpoint).
        dst_storage_options: fsspec options of the destination.
        src_filesystem: An fsspec filesystem instance for the source (``src_url`` is its path).
        dst_filesystem: An fsspec filesystem instance for the destination.

    Returns:
        What was moved, or None when the source holds no checkpoint at all (a fresh job).

    Raises:
        ConfigError: A bad option, or source and destination are the same store.
        CheckpointError: The source has checkpoints but none complete (on every rank), a source
            file cannot be read, or a copied file does not verify at the destination.
        TransferError: The destination cannot be written (full, read-only, access denied).
    """
    started = time.monotonic()
    _check_options(bandwidth_bytes_per_s, chunk_bytes)
    src = open_backend(src_url, storage_options=src_storage_options, filesystem=src_filesystem)
    try:
        dst = open_backend(dst_url, storage_options=dst_storage_options, filesystem=dst_filesystem)
    except CheckpointError as e:
        raise TransferError(f"cannot open destination store {dst_url}: {e}") from e
    if _same_store(src, dst):
        raise ConfigError(f"source and destination are the same store: {src_url}")
    ranks = _ranks(src, dst, src_storage_options, src_filesystem)
    candidates, any_steps = _candidate_steps(ranks)
    if not any_steps:
        logger.debug("no checkpoint at %s: nothing to transfer", src_url)
        return None
    mover = _Mover(src_url, dst_url, bandwidth_bytes_per_s, chunk_bytes, on_progress, started)
    reasons: list[str] = []
    for step in candidates:
        try:
            parts = [_part(rank, step) for rank in ranks]
            result = mover.move(step, parts)
        except SourceDamaged as e:
            logger.warning("step %d at %s is damaged, trying an older one: %s", step, src_url, e)
            reasons.append(f"step {step}: {e}")
            continue
        if prune_source:
            result = _prune(result, parts)
        result = dataclasses.replace(result, seconds=time.monotonic() - started)
        logger.info(
            "moved checkpoint step %d from %s to %s: %d bytes copied, %d already there, %.2f s",
            step,
            src_url,
            dst_url,
            result.bytes,
            result.skipped_bytes,
            result.seconds,
        )
        return result
    where = "on every rank " if ranks[0].name is not None else ""
    detail = f" ({'; '.join(reasons)})" if reasons else ""
    raise CheckpointError(f"no complete checkpoint {where}at {src_url}{detail}")


def _check_options(bandwidth_bytes_per_s: float | None, chunk_bytes: int) -> None:
    if bandwidth_bytes_per_s is not None and (
        isinstance(bandwidth_bytes_per_s, bool)
        or not isinstance(bandwidth_bytes_per_s, int | float)
        or not math.isfinite(bandwidth_bytes_per_s)
        or bandwidth_bytes_per_s <= 0
    ):
        raise ConfigError(
            f"bandwidth_bytes_per_s must be a finite number > 0 or None, "
            f"got {bandwidth_bytes_per_s!r}"
        )
    if isinstance(chunk_bytes, bool) or not isinstance(chunk_bytes, int) or chunk_bytes < 1:
        raise ConfigError(f"chunk_bytes must be an integer >= 1, got {chunk_bytes!r}")


def _same_store(src: Backend, dst: Backend) -> bool:
    if isinstance(src, LocalBackend) and isinstance(dst, LocalBackend):
        return os.path.realpath(src.root) == os.path.realpath(dst.root)
    return src.url(src.root).rstrip("/") == dst.url(dst.root).rstrip("/")


def _ranks(
    src: Backend, dst: Backend, storage_options: dict[str, Any] | None, filesystem: Any
) -> list[_Rank]:
    """The rank sub-stores of the source (one entry, named None, without DDP)."""
    numbers = sorted(
        int(m.group(1)) for m in map(_RANK_DIR.match, src.list_names(src.root)) if m is not None
    )
    if not numbers:
        store = CheckpointStore(
            src.url(src.root),
            keep_last=None,
            storage_options=storage_options,
            filesystem=filesystem,
        )
        return [_Rank(None, src, dst, store)]
    if numbers != list(range(len(numbers))):
        missing = sorted(set(range(max(numbers) + 1)) - set(numbers))
        raise CheckpointError(
            f"{src.url(src.root)} holds rank sub-stores {numbers} but not rank {missing[0]}"
        )
    ranks = []
    for number in numbers:
        name = f"rank-{number:05d}"
        url = src.url(src.join(name))
        ranks.append(
            _Rank(
                name,
                _sub_backend(src, name),
                _sub_backend(dst, name),
                CheckpointStore(
                    url, keep_last=None, storage_options=storage_options, filesystem=filesystem
                ),
            )
        )
    return ranks


def _sub_backend(backend: Backend, name: str) -> Backend:
    """The same kind of backend, rooted at ``name`` under ``backend``'s root."""
    if isinstance(backend, FsspecBackend):
        return FsspecBackend(backend.fs, backend.join(name))
    return LocalBackend(backend.join(name))


def _candidate_steps(ranks: list[_Rank]) -> tuple[list[int], bool]:
    """Steps with a valid manifest on every rank, newest first; whether any step dir exists."""
    any_steps = False
    common: set[int] | None = None
    for rank in ranks:
        names = rank.src.list_names(rank.src.root)
        any_steps = any_steps or any(_STEP_DIR.match(n) for n in names)
        steps = {info.step for info in rank.src_store.checkpoints()}
        common = steps if common is None else common & steps
    return sorted(common or (), reverse=True), any_steps


def _step_dir(backend: Backend, step: int) -> str:
    return backend.join(f"step-{step:09d}")


def _part(rank: _Rank, step: int) -> _Part:
    """Read and parse one rank's source manifest of ``step``."""
    src_dir = _step_dir(rank.src, step)
    where = rank.src.url(src_dir)
    path = rank.src.join(os.path.basename(src_dir), MANIFEST_NAME)
    try:
        data = rank.src.read_bytes(path)
    except FileNotFoundError as e:
        raise SourceDamaged(f"{where}/{MANIFEST_NAME} vanished") from e
    except OSError as e:
        raise CheckpointError(f"cannot read {where}/{MANIFEST_NAME}: {cause(e)}") from e
    try:
        manifest = Manifest.from_json(data, where=where)
    except CheckpointError as e:
        raise SourceDamaged(str(e)) from e
    if manifest.step != step:
        raise SourceDamaged(f"{where}/{MANIFEST_NAME} says step {manifest.step}")
    return _Part(rank, manifest, data, src_dir, _step_dir(rank.dst, step))


class _Mover:
    """Copies one step's files, paced and counted; see the module docstring for the order."""

    def __init__(
        self,
        src_url: str,
        dst_url: str,
        bandwidth_bytes_per_s: float | None,
        chunk_bytes: int,
        on_progress: Callable[[int, int], None] | None,
        started: float,
    ) -> None:
        self.src_url, self.dst_url = src_url, dst_url
        self.rate = bandwidth_bytes_per_s
        self.chunk_bytes = chunk_bytes
        self.on_progress = on_progress
        self.started = started
        self.step = -1
        self.copied = self.done = self.total = self.files = 0
        self.copy_started = started

    # ------------------------------------------------------------------ the step
    def move(self, step: int, parts: list[_Part]) -> TransferResult:
        self.step = step
        self.copied = self.files = 0
        self.total = sum(p.manifest.size_bytes + len(p.manifest_bytes) for p in parts)
        self.done = 0
        self.copy_started = time.monotonic()
        todo: list[tuple[_Part, FileEntry]] = []
        manifests_there = True
        for part in parts:
            if isinstance(part.rank.dst, LocalBackend):
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
                    part.rank.dst.remove_dir(part.dst_dir)
            raise
        for part in parts:
            self._sync(part)
        for part in parts:
            self._write_manifest(part)
        return self._result(parts)

    def _result(self, parts: list[_Part]) -> TransferResult:
        return TransferResult(
            step=self.step,
            bytes=self.copied,
            seconds=time.monotonic() - self.started,
            files=self.files,
            skipped_bytes=self.total - self.copied,
            src_url=self.src_url,
            dst_url=self.dst_url,
            ranks=len(parts),
        )

    @staticmethod
    def _rel(part: _Part, name: str) -> tuple[str, str]:
        return os.path.basename(part.dst_dir), name

    def _drop_manifest(self, part: _Part) -> None:
        dst = part.rank.dst
        path = dst.join(*self._rel(part, MANIFEST_NAME))
        self._dst("delete", path, dst, lambda: dst.remove_file(path))

    def _sync(self, part: _Part) -> None:
        dst = part.rank.dst
        self._dst("sync", part.dst_dir, dst, lambda: dst.sync_dir(part.dst_dir))

    def _manifest_there(self, part: _Part) -> bool:
        backend = part.rank.dst
        path = backend.join(*self._rel(part, MANIFEST_NAME))
        try:
            return backend.read_bytes(path) == part.manifest_bytes
        except Exception:  # absent or unreadable: it is rewritten, and a real fault shows then
            return False

    def _file_there(self, part: _Part, entry: FileEntry) -> bool:
        """Whether the destination already holds ``entry`` (size and sha256 read back)."""
        backend = part.rank.dst
        path = backend.join(*self._rel(part, entry.name))
        try:
            if backend.size(path) != entry.size_bytes:
                return False
            return backend.sha256(path) == entry.sha256
        except Exception:  # absent or unreadable: it is rewritten, and a real fault shows then
            return False

    # ------------------------------------------------------------------ copying
    def _copy_data(self, part: _Part, entry: FileEntry) -> None:
        src, dst = part.rank.src, part.rank.dst
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

        Returns the sha256 (tree) of the file as read back from a local destination while it
        was written, or None for other destinations (read back after they close).
        """
        with open_source(src, src_path) as reader, self._sink(dst, dst_path) as sink:
            left = size
            if isinstance(sink, LocalSink) and isinstance(reader, FdReader):
                left = self._kernel_copy(reader, sink, dst_path, size)
            while left > 0:
                piece = reader.read(min(self.chunk_bytes, left))
                if not piece:
                    raise SourceDamaged(f"{src.url(src_path)} ended {left} bytes early")
                self._dst("write", dst_path, dst, functools.partial(sink.write, piece))
                left -= len(piece)
                self._advance(len(piece), copied=True)
        return sink.sha256() if isinstance(sink, LocalSink) else None

    def _kernel_copy(self, reader: FdReader, sink: LocalSink, path: str, size: int) -> int:
        """Copy local to local in the kernel (``copy_file_range``); returns bytes left."""
        left = size
        while left > 0:
            try:
                n = os.copy_file_range(reader.fileno(), sink.fileno(), min(self.chunk_bytes, left))
                if n:
                    sink.appended(n)
            except OSError as e:
                if e.errno in _NO_KERNEL_COPY and left == size:
                    return left  # not supported between these filesystems: copy by reading
                raise TransferError(
                    f"cannot move step {self.step} to {self.dst_url}: cannot write "
                    f"{path}: {cause(e)}"
                ) from e
            if n == 0:
                break
            left -= n
            self._advance(n, copied=True)
        return left

    @contextlib.contextmanager
    def _sink(self, dst: Backend, path: str) -> Iterator[Sink]:
        """A destination file, committed under ``path`` only when the block ends cleanly."""
        sink = self._dst("open", path, dst, lambda: open_sink(dst, path))
        try:
            yield sink
            self._dst("finish", path, dst, sink.commit)
        except BaseException:
            sink.abort()
            raise

    def _write_manifest(self, part: _Part) -> None:
        dst = part.rank.dst
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


def _prune(result: TransferResult, parts: list[_Part]) -> TransferResult:
    """Delete the source's copy of the moved step (manifests first); failures only warn."""
    try:
        for part in parts:
            src = part.rank.src
            src.remove_file(src.join(os.path.basename(part.src_dir), MANIFEST_NAME))
            src.sync_dir(part.src_dir)
        for part in parts:
            part.rank.src.remove_dir(part.src_dir)
    except (OSError, CheckpointError) as e:
        logger.warning(
            "moved step %d but could not prune it at %s: %s", result.step, result.src_url, e
        )
        return result
    return dataclasses.replace(result, pruned_source=True)
