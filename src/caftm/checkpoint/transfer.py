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
   name that is fsynced and renamed (local: each piece hashed as it passes, one pass over the
   bytes), or to an object that appears whole on close (object stores: read back from the
   destination), and checked against the manifest. A mismatch whose cause is the source marks
   that step damaged (an older complete step is tried); otherwise it is a
   :class:`~caftm.errors.CheckpointError` about the destination.
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

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from caftm.checkpoint._backend import Backend, LocalBackend, open_backend
from caftm.checkpoint._transfer_files import SourceDamaged, TransferError
from caftm.checkpoint._transfer_step import Part, StepCopier
from caftm.checkpoint.layout import (
    DamagedManifest,
    complete_steps,
    rank_backends,
    read_manifest,
    step_dir_name,
    step_numbers,
)
from caftm.checkpoint.manifest import MANIFEST_NAME
from caftm.errors import CheckpointError, ConfigError

__all__ = ["TransferError", "TransferResult", "transfer_latest", "written_at_destination"]

logger = logging.getLogger(__name__)


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
        written_by_worker: The worker wrote the step straight into the destination's store
            (:func:`written_at_destination`); ``bytes`` then counts what it wrote.
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
    written_by_worker: bool = False

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
    ranks = [_Rank(name, store, dst if name is None else dst.subdir(name))
             for name, store in rank_backends(src)]  # fmt: skip
    if not any(step_numbers(rank.src) for rank in ranks):
        logger.debug("no checkpoint at %s: nothing to transfer", src_url)
        return None
    copier = StepCopier(dst_url, bandwidth_bytes_per_s, chunk_bytes, on_progress)
    reasons: list[str] = []
    for step in complete_steps([rank.src for rank in ranks]):
        try:
            parts = [_part(rank, step) for rank in ranks]
            copied = copier.copy(step, parts)
        except SourceDamaged as e:
            logger.warning("step %d at %s is damaged, trying an older one: %s", step, src_url, e)
            reasons.append(f"step {step}: {e}")
            continue
        result = TransferResult(
            step=step,
            bytes=copied.bytes,
            seconds=0.0,
            files=copied.files,
            skipped_bytes=copied.skipped_bytes,
            src_url=src_url,
            dst_url=dst_url,
            ranks=len(parts),
        )
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


def written_at_destination(
    dst_url: str,
    step: int,
    *,
    dst_storage_options: dict[str, Any] | None = None,
    dst_filesystem: Any = None,
) -> TransferResult | None:
    """The move of ``step`` when the worker wrote it straight into the destination's store.

    Cheap: reads listings and manifests only (the restore verifies every byte as it reads it).
    Returns None when ``step`` is not the newest step complete there (on every rank under DDP):
    then it must be copied.

    Raises:
        ConfigError: ``dst_url`` or the options are malformed.
    """
    started = time.monotonic()
    try:
        dst = open_backend(dst_url, storage_options=dst_storage_options, filesystem=dst_filesystem)
        stores = [store for _, store in rank_backends(dst)]
        if next(complete_steps(stores), None) != step:
            return None
        size = sum(read_manifest(store, step)[0].size_bytes for store in stores)
    except CheckpointError as e:
        logger.debug("%s does not hold step %d: %s", dst_url, step, e)
        return None
    return TransferResult(step=step, bytes=size, seconds=time.monotonic() - started, files=0,
                          skipped_bytes=0, src_url="", dst_url=dst_url, ranks=len(stores),
                          written_by_worker=True)  # fmt: skip


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


def _part(rank: _Rank, step: int) -> Part:
    """Read and parse one rank's source manifest of ``step``."""
    try:
        manifest, data = read_manifest(rank.src, step)
    except DamagedManifest as e:
        raise SourceDamaged(str(e)) from e
    src_dir, dst_dir = rank.src.join(step_dir_name(step)), rank.dst.join(step_dir_name(step))
    return Part(rank.src, rank.dst, manifest, data, src_dir, dst_dir)


def _prune(result: TransferResult, parts: list[Part]) -> TransferResult:
    """Delete the source's copy of the moved step (manifests first); failures only warn."""
    try:
        for part in parts:
            src = part.src
            src.remove_file(src.join(os.path.basename(part.src_dir), MANIFEST_NAME))
            src.sync_dir(part.src_dir)
        for part in parts:
            part.src.remove_dir(part.src_dir)
    except (OSError, CheckpointError) as e:
        logger.warning(
            "moved step %d but could not prune it at %s: %s", result.step, result.src_url, e
        )
        return result
    return dataclasses.replace(result, pruned_source=True)
