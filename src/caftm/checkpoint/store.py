"""Checkpoint store: atomic, verified, pruned checkpoints on local disk or object storage.

Layout under the store's root::

    <root>/step-000000123/tensors.safetensors   all tensors (one safetensors file)
                         /state.json            the rest of the state tree, type-tagged JSON
                         /MANIFEST.json         sizes + sha256 of the two files; written LAST

A checkpoint is *complete* when its manifest exists, parses, has the known format version and
every file matches its size and sha256. Only complete checkpoints are ever deserialised, and
checksums are verified on the exact bytes that are then parsed. Nothing is unpickled.

Example::

    state = TrainingState(model=model, optimizer=opt, scheduler=sched, sampler=sampler)
    store = CheckpointStore("s3://bucket/run-7", keep_last=3)
    info = store.restore_latest(state)          # None on a fresh start
    step = info.step if info else 0
    ...
    handle = store.save_async(state, step=step) # snapshot now, write in the background
    ...
    store.close()                               # waits for the last write

``torch.distributed.checkpoint`` is not used: its metadata file is a pickle, and loading it
would mean unpickling data read from storage.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from caftm._notice import notice
from caftm.checkpoint._backend import Backend, LocalBackend, open_backend
from caftm.checkpoint._ints import as_int
from caftm.checkpoint.layout import read_manifest, step_dir_name, step_numbers
from caftm.checkpoint.manifest import (
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    REQUIRED_FILES,
    STATE_NAME,
    TENSORS_NAME,
    FileEntry,
    Manifest,
)
from caftm.checkpoint.owner import ForeignCheckpoints, JobIdentity
from caftm.checkpoint.serialize import (
    EncodedTree,
    decode_tree,
    encode_tree,
    load_tensor_file,
    load_tensor_view,
    tensor_file_buffers,
)
from caftm.checkpoint.state import TrainingState
from caftm.errors import CheckpointError, ConfigError

__all__ = ["CheckpointInfo", "CheckpointStore", "SaveHandle"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointInfo:
    """A complete checkpoint in a store.

    Attributes:
        step: Training step it was taken at.
        path: Its directory (a local path, or a URL such as ``s3://bucket/run/step-000000123``).
        manifest: Its parsed manifest.
    """

    step: int
    path: str
    manifest: Manifest

    @property
    def size_bytes(self) -> int:
        """Total size of its data files in bytes."""
        return self.manifest.size_bytes

    @property
    def created_unix_s(self) -> float:
        """When it was written, seconds since the epoch."""
        return self.manifest.created_unix_s


class SaveHandle:
    """An asynchronous save in flight; see :meth:`CheckpointStore.save_async`."""

    def __init__(self, step: int, future: concurrent.futures.Future[CheckpointInfo]) -> None:
        self.step = step
        self._future = future
        self._error_reported = False

    def done(self) -> bool:
        """Whether the write has finished (successfully or not)."""
        return self._future.done()

    def wait(self, timeout_s: float | None = None) -> CheckpointInfo:
        """Block until the checkpoint is complete on storage.

        Args:
            timeout_s: Give up after this many seconds (None: wait as long as it takes).

        Raises:
            CheckpointError: The write failed (its cause chained), or the timeout passed.
        """
        try:
            return self._future.result(timeout_s)
        except concurrent.futures.TimeoutError as e:
            raise CheckpointError(
                f"asynchronous save of step {self.step} still running after {timeout_s} s"
            ) from e
        except Exception as e:
            self._error_reported = True
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(f"asynchronous save of step {self.step} failed: {e!r}") from e

    def _unreported_error(self) -> BaseException | None:
        concurrent.futures.wait([self._future])
        error = self._future.exception()
        if error is None or self._error_reported:
            return None
        self._error_reported = True
        return error


class CheckpointStore:
    """Saves, verifies, lists, prunes and restores checkpoints under one root.

    Args:
        url: A local path, ``file://`` URL or any fsspec URL (``s3://bucket/prefix``).
        keep_last: Keep this many newest complete checkpoints (None keeps all). Older ones,
            and abandoned partial ones, are deleted only after a newer one is complete.
        storage_options: fsspec options, e.g. ``{"client_kwargs": {"endpoint_url": ...}}``.
        filesystem: An fsspec filesystem instance to use instead of resolving ``url``.
        owner: the job this store saves for (:class:`~caftm.checkpoint.owner.JobIdentity`):
            recorded in each checkpoint; a restore refuses another job's checkpoints. None
            (a script run alone): nothing recorded, nothing refused.

    Raises:
        ConfigError: ``keep_last`` is not an integer >= 1.
        CheckpointError: The URL's filesystem cannot be opened.
    """

    def __init__(
        self,
        url: str | os.PathLike[str],
        *,
        keep_last: int | None = 3,
        storage_options: dict[str, Any] | None = None,
        filesystem: Any = None,
        owner: JobIdentity | None = None,
    ) -> None:
        if keep_last is not None and as_int("keep_last", keep_last) < 1:
            raise ConfigError(f"keep_last must be an integer >= 1 or None, got {keep_last!r}")
        self.keep_last = keep_last
        self.owner = owner
        self._backend: Backend = open_backend(
            url, storage_options=storage_options, filesystem=filesystem
        )
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_pid = 0
        self._pending: SaveHandle | None = None
        # manifests this store wrote or read, by step: pruning never reads them again
        self._known: dict[int, Manifest] = {}
        self._known_lock = threading.Lock()
        # read and verified ahead of its restore (prefetch_latest): the checkpoint and its tree
        self._prefetched: tuple[CheckpointInfo, dict[str, Any]] | None = None

    @property
    def url(self) -> str:
        """The store's root, as a path or URL."""
        return self._backend.url(self._backend.root)

    # ----------------------------------------------------------------- saving
    def save(self, state: TrainingState, *, step: int) -> CheckpointInfo:
        """Write a checkpoint of ``state`` now; returns once it is complete and durable.

        CPU tensors are written straight from memory, without a copy. Waits for an earlier
        asynchronous save first.

        Raises:
            ConfigError: ``step`` is not an integer >= 0.
            CheckpointError: Storage failed (the path is named; earlier checkpoints are intact),
                the state holds a value that cannot be stored, or an earlier asynchronous save
                failed without anyone having seen its error.
        """
        self._settle_pending()
        step = _step_number(step)
        return self._write(self._encode(state, step, snapshot=False), step)

    def save_async(self, state: TrainingState, *, step: int) -> SaveHandle:
        """Snapshot ``state`` now (tensors copied to CPU), write it in a background thread.

        Training may change the model as soon as this returns. At most one write is in flight:
        a second call first waits for the previous one.

        Raises:
            ConfigError: ``step`` is not an integer >= 0.
            CheckpointError: The state cannot be stored, or the previous asynchronous save
                failed (errors of the write itself surface from :meth:`SaveHandle.wait` or
                from the next save).
        """
        self._settle_pending()
        step = _step_number(step)  # checked here, not in the writer thread: raises at once
        encoded = self._encode(state, step, snapshot=True)
        handle = SaveHandle(step, self._get_executor().submit(self._write, encoded, step))
        self._pending = handle
        return handle

    def wait(self) -> CheckpointInfo | None:
        """Wait for the asynchronous save in flight, if any; returns its checkpoint.

        Raises:
            CheckpointError: That save failed.
        """
        handle, self._pending = self._pending, None
        return None if handle is None else handle.wait()

    def close(self) -> None:
        """Wait for a pending asynchronous save and stop the writer thread.

        Raises:
            CheckpointError: The pending save failed and nobody has seen the error yet.
        """
        try:
            self._settle_pending()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def __enter__(self) -> CheckpointStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            try:
                self.close()
            except CheckpointError:
                logger.exception("pending checkpoint save failed while handling another error")

    def _get_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None or self._executor_pid != os.getpid():
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="caftm-checkpoint"
            )
            self._executor_pid = os.getpid()
        return self._executor

    def _settle_pending(self) -> None:
        handle, self._pending = self._pending, None
        if handle is None:
            return
        error = handle._unreported_error()
        if error is not None:
            raise CheckpointError(
                f"previous asynchronous save of step {handle.step} failed: {error}"
            ) from error

    @staticmethod
    def _encode(state: TrainingState, step: int, *, snapshot: bool) -> EncodedTree:
        return encode_tree(state.capture(step=step), snapshot=snapshot)

    def _write(self, encoded: EncodedTree, step: int) -> CheckpointInfo:
        backend = self._backend
        directory = self._step_dir(step)
        backend.make_dir(directory)
        manifest_path = self._step_file(step, MANIFEST_NAME)
        self._forget(step)
        if backend.exists(manifest_path):
            logger.warning("replacing the existing checkpoint at step %d in %s", step, self.url)
            backend.remove_file(manifest_path)
            backend.sync_dir(directory)
        metadata = {"format": "pt", "caftm_format_version": str(FORMAT_VERSION)}
        tensors_size, tensors_sha = backend.write_file(
            self._step_file(step, TENSORS_NAME),
            tensor_file_buffers(encoded.tensors, metadata=metadata),
        )
        state_json = json.dumps(
            {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "tree": encoded.structure},
            allow_nan=False,
            separators=(",", ":"),
        ).encode("utf-8")
        state_size, state_sha = backend.write_file(
            self._step_file(step, STATE_NAME), [memoryview(state_json)]
        )
        backend.sync_dir(directory)
        manifest = Manifest(
            step=step,
            files=(
                FileEntry(TENSORS_NAME, tensors_size, tensors_sha),
                FileEntry(STATE_NAME, state_size, state_sha),
            ),
            created_unix_s=time.time(),
            caftm_version=_caftm_version(),
            job=None if self.owner is None else self.owner.name,
            job_digest=None if self.owner is None else self.owner.digest,
        )
        backend.write_file(manifest_path, [memoryview(manifest.to_json())])
        backend.sync_dir(directory)
        self._remember(step, manifest)
        info = CheckpointInfo(step=step, path=backend.url(directory), manifest=manifest)
        logger.info(
            "checkpoint of step %d complete at %s (%d bytes)", step, info.path, info.size_bytes
        )
        self._prune()
        return info

    # ----------------------------------------------------------------- listing
    def _step_dir(self, step: int) -> str:
        return self._backend.join(step_dir_name(step))

    def _step_file(self, step: int, name: str) -> str:
        return self._backend.join(step_dir_name(step), name)

    def _step_numbers(self) -> list[int]:
        return step_numbers(self._backend)

    def _read_manifest(self, step: int) -> Manifest:
        """Read and parse the manifest of ``step`` from storage; remembers the result."""
        try:
            manifest, _ = read_manifest(self._backend, step)
        except CheckpointError:
            self._forget(step)
            raise
        self._remember(step, manifest)
        return manifest

    def _remember(self, step: int, manifest: Manifest) -> None:
        with self._known_lock:
            self._known[step] = manifest

    def _forget(self, step: int) -> None:
        with self._known_lock:
            self._known.pop(step, None)

    def checkpoints(self) -> list[CheckpointInfo]:
        """Checkpoints whose manifest is present and valid, oldest first (files not hashed)."""
        found = []
        for step in self._step_numbers():
            try:
                manifest = self._read_manifest(step)
            except CheckpointError:
                continue
            found.append(CheckpointInfo(step, self._backend.url(self._step_dir(step)), manifest))
        return found

    def steps_present(self) -> list[int]:
        """Steps with a directory in the store, complete or not, oldest first."""
        return self._step_numbers()

    def verify(self, step: int) -> CheckpointInfo:
        """Check the checkpoint of ``step`` completely: manifest, sizes and sha256 of each file.

        Raises:
            ConfigError: ``step`` is not an integer >= 0.
            CheckpointError: It is incomplete, of an unknown format, or a file was altered.
        """
        step = _step_number(step)
        manifest = self._read_manifest(step)
        where = self._backend.url(self._step_dir(step))
        for entry in manifest.files:
            path = self._step_file(step, entry.name)
            try:
                size = self._backend.size(path)
                if size != entry.size_bytes:
                    raise CheckpointError(
                        f"{where}/{entry.name} is {size} bytes, manifest says {entry.size_bytes}"
                    )
                digest = self._backend.sha256(path)
            except OSError as e:
                raise CheckpointError(f"cannot read {where}/{entry.name}: {e}") from e
            if digest != entry.sha256:
                raise CheckpointError(f"{where}/{entry.name} sha256 does not match its manifest")
        return CheckpointInfo(step=step, path=where, manifest=manifest)

    def latest(self) -> CheckpointInfo | None:
        """The newest complete, verified checkpoint, or None.

        Incomplete or damaged checkpoints are skipped with a warning.
        """
        for step in reversed(self._step_numbers()):
            try:
                return self.verify(step)
            except CheckpointError as e:
                notice("skipping checkpoint: %s", e, warning=True)
        return None

    # ----------------------------------------------------------------- loading
    def load(self, checkpoint: CheckpointInfo | int) -> dict[str, Any]:
        """Read, verify and decode a checkpoint's state tree (not applied to anything).

        Every file is read once (a large local tensors file past the page cache),
        its size and sha256 checked against the manifest re-read from storage, and only then
        parsed.

        Raises:
            ConfigError: ``checkpoint`` is not a CheckpointInfo or a step >= 0.
            CheckpointError: Incomplete, tampered, unreadable or malformed.
        """
        step = _checkpoint_step(checkpoint)
        return self._load(step)[0]

    def _load(self, step: int, *, into_model: bool = False) -> tuple[dict[str, Any], Manifest]:
        """Read, verify and decode ``step``. ``into_model``: the tree goes to
        :meth:`TrainingState.restore` at once, which copies the model's tensors into the live
        model: those are handed over as views of the verified bytes, not copied out first."""
        manifest = self._read_manifest(step)
        where = self._backend.url(self._step_dir(step))
        if self.owner is not None:
            self.owner.check(manifest, where=self.url)
        payload: dict[str, bytes] = {}
        tensors: dict[str, Any] | None = None
        for name in REQUIRED_FILES:
            entry = manifest.file(name)
            path = self._step_file(step, name)
            try:
                backend = self._backend
                if name == TENSORS_NAME and isinstance(backend, LocalBackend):
                    # one pass: read (past the page cache when large), each block hashed as it
                    # arrives, then parsed from the verified bytes
                    view = backend.read_verified(
                        path, entry.size_bytes, entry.sha256, where=f"{where}/{name}"
                    )
                    if view.nbytes:
                        tensors = load_tensor_view(
                            view, name=f"{where}/{name}", shared=_model_key if into_model else None
                        )
                        continue
                    payload[name] = b""
                    continue
                data = self._backend.read_bytes(path)
            except OSError as e:
                raise CheckpointError(f"cannot read {where}/{name}: {e}") from e
            entry.check(data, where=where)
            payload[name] = data
        try:
            state = json.loads(payload[STATE_NAME])
            structure = state["tree"]
            if state.get("format_version") != FORMAT_VERSION:
                raise CheckpointError(f"{where}/{STATE_NAME} has an unknown format version")
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            raise CheckpointError(f"{where}/{STATE_NAME} is malformed: {e}") from e
        if tensors is None:
            tensors = load_tensor_file(payload.pop(TENSORS_NAME), name=f"{where}/{TENSORS_NAME}")
        tree = decode_tree(structure, tensors)
        if not isinstance(tree, dict) or tree.get("step") != step:
            raise CheckpointError(f"{where}/{STATE_NAME} does not hold the state of step {step}")
        return tree, manifest

    def restore(self, state: TrainingState, checkpoint: CheckpointInfo | int) -> int:
        """Load a checkpoint into ``state``'s objects in place; returns its step.

        Raises:
            CheckpointError: See :meth:`load` and :meth:`TrainingState.restore`.
        """
        step = _checkpoint_step(checkpoint)
        tree = self._load(step, into_model=True)[0]
        return state.restore(tree, where=self._backend.url(self._step_dir(step)))

    def load_latest(self) -> tuple[CheckpointInfo, dict[str, Any]] | None:
        """Read, verify and decode the newest checkpoint that verifies; each file is read once.

        Damaged or incomplete checkpoints are skipped with a warning, falling back to older
        ones. Returns the checkpoint and its state tree (not applied to anything), or None.

        Raises:
            ForeignCheckpoints: the newest intact checkpoint belongs to another job.
        """
        return self._load_latest(into_model=False)

    def prefetch_latest(self) -> int | None:
        """Read and verify the newest complete checkpoint ahead of its restore (a worker that
        waits for its go does this while it waits); :meth:`restore_latest` then applies it
        without reading it again if it is still the newest, its manifest unchanged. Nothing is
        applied here. Returns its step (None: none yet, or it does not load: the restore will
        say why).
        """
        for step in reversed(self._step_numbers()):
            try:
                manifest = self._read_manifest(step)
            except CheckpointError:
                continue  # incomplete (maybe being written): an older one may be complete
            held = self._prefetched
            if held is not None and held[0].step == step and held[0].manifest == manifest:
                return step
            self._prefetched = None  # what was held is not the newest any more
            try:
                tree, manifest = self._load(step, into_model=True)
            except CheckpointError as e:
                logger.debug("not prefetched: %s", e)
                return None
            where = self._backend.url(self._step_dir(step))
            self._prefetched = CheckpointInfo(step=step, path=where, manifest=manifest), tree
            return step
        return None

    def _take_prefetched(self, step: int) -> tuple[CheckpointInfo, dict[str, Any]] | None:
        """The prefetched checkpoint if it is of ``step`` and its manifest is unchanged."""
        held, self._prefetched = self._prefetched, None
        if held is None or held[0].step != step:
            return None
        try:
            unchanged = self._read_manifest(step) == held[0].manifest
        except CheckpointError:
            return None
        return held if unchanged else None

    def _load_latest(self, *, into_model: bool) -> tuple[CheckpointInfo, dict[str, Any]] | None:
        for step in reversed(self._step_numbers()):
            held = self._take_prefetched(step) if into_model else None
            if held is not None:
                return held
            try:
                tree, manifest = self._load(step, into_model=into_model)
            except ForeignCheckpoints:
                raise  # never fall back past another job's checkpoint
            except CheckpointError as e:
                notice("skipping checkpoint: %s", e, warning=True)
                continue
            where = self._backend.url(self._step_dir(step))
            return CheckpointInfo(step=step, path=where, manifest=manifest), tree
        return None

    def restore_latest(self, state: TrainingState) -> CheckpointInfo | None:
        """Restore the newest checkpoint that verifies, reading each file only once.

        Damaged or incomplete checkpoints are skipped with a warning, falling back to older
        ones. Returns None (state untouched) when there is none.

        Raises:
            CheckpointError: A verified checkpoint does not fit ``state`` (wrong model, ...),
                or belongs to another job (:class:`~caftm.checkpoint.owner.ForeignCheckpoints`).
        """
        loaded = self._load_latest(into_model=True)
        if loaded is None:
            return None
        info, tree = loaded
        state.restore(tree, where=info.path)
        return info

    # ----------------------------------------------------------------- pruning
    def _prune(self) -> None:
        """Delete old and abandoned checkpoints; reads only manifests this store does not know.

        The step directories are listed afresh (another process may have added or removed
        some); a manifest already written or read by this store is not read again.
        """
        steps = self._step_numbers()
        with self._known_lock:
            for gone in set(self._known) - set(steps):
                del self._known[gone]
            known = set(self._known)
        complete, partial = [], []
        for step in steps:
            if step in known:
                complete.append(step)
                continue
            try:
                self._read_manifest(step)
                complete.append(step)
            except CheckpointError:
                partial.append(step)
        if not complete:
            return
        newest = complete[-1]
        doomed = [s for s in partial if s < newest]
        if self.keep_last is not None:
            doomed += complete[: -self.keep_last]
        for step in sorted(doomed):
            directory = self._step_dir(step)
            self._forget(step)
            try:
                self._backend.remove_file(self._step_file(step, MANIFEST_NAME))
                self._backend.remove_dir(directory)
                logger.debug("pruned checkpoint directory %s", directory)
            except (OSError, CheckpointError) as e:
                logger.warning("could not delete old checkpoint %s: %s", directory, e)


def _model_key(key: str) -> bool:
    """Whether a tensor's key (its path in the captured tree) is one of the model's."""
    return key.startswith("state.model.")


def _checkpoint_step(checkpoint: CheckpointInfo | int) -> int:
    return checkpoint.step if isinstance(checkpoint, CheckpointInfo) else _step_number(checkpoint)


def _step_number(step: Any) -> int:
    """``step`` as a plain int (numpy and torch integers too).

    Raises:
        ConfigError: Not an integer, or negative.
    """
    number = as_int("step", step)
    if number < 0:
        raise ConfigError(f"step must be >= 0, got {number}")
    return number


def _caftm_version() -> str:
    from caftm import __version__

    return __version__
