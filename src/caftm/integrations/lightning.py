"""PyTorch Lightning integration: a callback, a checkpoint-IO plugin and a resumable loader.

Usage::

    from caftm.checkpoint import ResumableSampler
    from caftm.integrations.lightning import CarbonAwareCallback, ResumableDataLoader

    session = ControllerSession(Controller.from_config(config))
    callback = CarbonAwareCallback(session, CheckpointStore(config.checkpoint.url))
    loader = ResumableDataLoader(dataset, batch_size=32,
                                 sampler=ResumableSampler(len(dataset), seed=1))
    trainer = pl.Trainer(callbacks=[callback], plugins=[callback.checkpoint_io], ...)
    trainer.fit(module, loader, ckpt_path=callback.resume_path())
    if callback.stop_request: ...                              # moved or paused

How resume stays bit-exact: Lightning's own full checkpoint (module, optimisers, schedulers,
loop progress, callback states) is written through :class:`CaftmCheckpointIO` into caftm's
checkpoint store (safetensors + JSON, sha256 manifest; never pickled). The loader's position is
the number of samples the loop has *used* (Lightning fetches one batch ahead, so the sampler's
own count is one batch too far). The global RNGs are captured in the callback's state and put
back exactly where the uninterrupted run would have them: after the resumed loader's iterator
is created for a mid-epoch checkpoint (that creation may draw from the global RNG, which the
uninterrupted run did not do mid-epoch), before it for an end-of-epoch checkpoint.

One process only: under a multi-process strategy every rank would run its own controller, so
``fit`` is refused (ConfigError) before the controller starts; for DDP use
:class:`caftm.integrations.torch.CarbonAwareTraining`. Training data outside a
:class:`ResumableDataLoader` is refused the same way (a resume would restart its epoch and, with
a shuffling sampler, draw another order) unless ``allow_unsaved_state=True``.

Under ``caftm run`` the callback keeps the supervisor's live status (step, step restored,
controller) and writes how the leg ended; its fate lines (a checkpoint skipped as damaged, a
fresh start although the store holds checkpoints) reach the supervisor's terminal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from torch.utils.data import DataLoader, Sampler

from caftm.checkpoint import CheckpointInfo, CheckpointStore, ResumableSampler, TrainingState
from caftm.checkpoint.rng import capture_rng_state, restore_rng_state
from caftm.errors import CheckpointError, ConfigError
from caftm.integrations._core import ControllerSession, Outcome, StopRequest
from caftm.integrations._state import TreeHolder
from caftm.integrations._supervised import SupervisorReport, notice_fresh_start
from caftm.integrations._unsaved import OPT_OUT
from caftm.records import RunStatus

__all__ = ["CaftmCheckpointIO", "CarbonAwareCallback", "ResumableDataLoader"]

log = logging.getLogger(__name__)

LATEST = "caftm:latest"
_PREFIX = "caftm:step-"


class CaftmCheckpointIO(CheckpointIO):
    """Lightning checkpoint IO through a :class:`~caftm.checkpoint.CheckpointStore`.

    Paths are labels: ``caftm:step-<N>`` to save, ``caftm:latest`` (or a step label) to load.
    """

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self._prefetched: tuple[CheckpointInfo, dict[str, Any]] | None = None

    def find_latest(self) -> CheckpointInfo | None:
        """Read and verify the latest complete checkpoint; the next load uses it as read.

        Returns:
            The checkpoint, or None when the store holds none.
        """
        self._prefetched = self.store.load_latest()
        return None if self._prefetched is None else self._prefetched[0]

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Store Lightning's checkpoint dict under its global step."""
        step = int(checkpoint.get("global_step", 0))
        self.store.save(
            TrainingState(stateful={"lightning": TreeHolder(checkpoint)}, rng=False), step=step
        )
        log.info("lightning checkpoint for step %d stored (%s)", step, path)

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Load the latest complete checkpoint (``caftm:latest``) or the one of a given step.

        Raises:
            CheckpointError: none stored, or the requested step is not the latest.
        """
        holder = TreeHolder()  # read, verified and decoded once
        state = TrainingState(stateful={"lightning": holder}, rng=False)
        prefetched, self._prefetched = self._prefetched, None
        if prefetched is None:
            info = self.store.restore_latest(state)
        else:  # verified by find_latest (resume_path): not read nor hashed again
            info, tree = prefetched
            state.restore(tree, where=info.path)
        if info is None:
            raise CheckpointError(
                f"no complete checkpoint in {self.store.url}; start without ckpt_path"
            )
        label = str(path)
        if label.startswith(_PREFIX) and int(label.removeprefix(_PREFIX)) != info.step:
            raise CheckpointError(
                f"checkpoint {label} is not the latest complete one in {self.store.url} "
                f"(step {info.step}); resume from {LATEST}"
            )
        if not isinstance(holder.tree, dict):
            raise CheckpointError(
                f"checkpoint step {info.step} in {self.store.url} is not a Lightning one"
            )
        return holder.tree

    def remove_checkpoint(self, path: Any) -> None:
        """Nothing: the store keeps its last N checkpoints itself."""


class _ForwardEpochs(Sampler[int]):
    """Passes a :class:`ResumableSampler` through, honouring ``set_epoch`` only forwards.

    The sampler's restored position is the truth: after a resume at an epoch's end Lightning
    may announce the epoch just finished again, which would replay it.
    """

    def __init__(self, inner: ResumableSampler) -> None:
        self.inner = inner

    def __iter__(self) -> Iterator[int]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)

    def set_epoch(self, epoch: int) -> None:
        if epoch > self.inner.epoch:
            self.inner.set_epoch(epoch)


class ResumableDataLoader(DataLoader):  # type: ignore[type-arg]
    """A ``DataLoader`` over a :class:`~caftm.checkpoint.ResumableSampler` that Lightning sees as
    stateful, so that a mid-epoch checkpoint resumes at the right sample.

    Takes the ``DataLoader`` keyword arguments; ``sampler`` must be a ``ResumableSampler``.

    Raises:
        ConfigError: the sampler is not a ``ResumableSampler``.
    """

    def __init__(self, dataset: Any, *, sampler: ResumableSampler, **kwargs: Any) -> None:
        if not isinstance(sampler, ResumableSampler):
            raise ConfigError(
                "ResumableDataLoader needs sampler=ResumableSampler(len(dataset), ...), "
                f"got {type(sampler).__name__}"
            )
        self._resumable = sampler
        super().__init__(dataset, sampler=_ForwardEpochs(sampler), **kwargs)
        self._marked: dict[str, Any] | None = None

    @property
    def resumable_sampler(self) -> ResumableSampler:
        """The sampler given to the constructor."""
        return self._resumable

    def mark_position(self, epoch: int, samples_used: int) -> None:
        """Record what the loop has used: ``samples_used`` samples of ``epoch`` (this rank)."""
        state = self.resumable_sampler.state_dict()
        if samples_used >= self.resumable_sampler.num_samples:
            epoch, samples_used = epoch + 1, 0
        state.update(epoch=epoch, index=samples_used)
        self._marked = state

    def state_dict(self) -> dict[str, Any]:
        """The marked position (else the sampler's own, which may run ahead of the loop)."""
        return (
            dict(self._marked) if self._marked is not None else self.resumable_sampler.state_dict()
        )

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the sampler at a saved position."""
        self.resumable_sampler.load_state_dict(state_dict)
        self._marked = None


class CarbonAwareCallback(pl.Callback):
    """Consults the CAFTM controller after every training batch; checkpoints and stops on its word.

    Args:
        session: the controller and its side effects (see :class:`ControllerSession`); its
            state travels in every checkpoint.
        store: where checkpoints go.
        allow_unsaved_state: train data outside a :class:`ResumableDataLoader` (a resume then
            restarts its epoch, in another order if it shuffles) instead of refusing to start.

    Attributes:
        stop_request: why the last ``fit`` stopped early (None: it ran to its end).
        checkpoint_io: the plugin to pass to ``Trainer(plugins=[...])``.
    """

    def __init__(
        self,
        session: ControllerSession,
        store: CheckpointStore,
        *,
        allow_unsaved_state: bool = False,
    ) -> None:
        self.session = session
        self.store = store
        self.allow_unsaved_state = allow_unsaved_state
        self.checkpoint_io = CaftmCheckpointIO(store)
        self.stop_request: StopRequest | None = None
        self._rng_to_restore: dict[str, Any] | None = None
        self._saved_at_epoch_end = False
        self._last_step = -1
        #: the supervisor's live status and the leg's outcome (nothing when run alone)
        self._report = SupervisorReport()
        self._start_step: int | None = None
        self._trainer: pl.Trainer | None = None

    @property
    def state_key(self) -> str:
        return "caftm"

    def resume_path(self) -> str | None:
        """``ckpt_path`` for ``Trainer.fit``: the latest complete checkpoint, or None.

        The checkpoint is read and verified here once; ``fit`` then loads it from memory.
        """
        self._attach()  # a checkpoint skipped as damaged is a fate line
        return LATEST if self.checkpoint_io.find_latest() is not None else None

    # -- the supervisor's view ---------------------------------------------------------------
    def _attach(self) -> None:
        self._report.attach(on_record=lambda: self._write_status(force=True))

    def _write_status(self, *, force: bool = False) -> None:
        if not self._report.supervised:
            return
        trainer = self._trainer
        fields: dict[str, object] = {"outcome": self._outcome().value}
        if trainer is not None:
            fields["step"] = trainer.global_step
            fields["total_steps"] = trainer.max_steps if trainer.max_steps > 0 else None
        if self._start_step is not None:
            fields["start_step"] = self._start_step  # the step restored (0: a fresh start)
        started = self._start_step is not None
        self._report.write(fields, self.session if started else None, force=force)

    def _outcome(self) -> Outcome:
        return Outcome.RUNNING if self.stop_request is None else self.stop_request.outcome

    def _end(self, request: StopRequest | None) -> None:
        """The last word to a supervisor: how the leg ended (None: it failed), the status."""
        if request is not None:
            self._report.write_outcome(request)
        self._write_status(force=True)
        self._report.detach()

    # -- checkpoint content -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "rng": capture_rng_state(),
            "saved_at_epoch_end": self._saved_at_epoch_end,
            "controller": self.session.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        try:
            rng, at_epoch_end = state_dict["rng"], bool(state_dict["saved_at_epoch_end"])
            self.session.load_state_dict(state_dict["controller"])
        except (KeyError, TypeError) as e:
            raise CheckpointError(f"malformed caftm callback state in the checkpoint: {e}") from e
        if at_epoch_end:
            restore_rng_state(rng)  # the next epoch's iterator draws after this, as it did
        else:
            self._rng_to_restore = rng  # after the resumed iterator exists: on_train_start

    # -- hooks --------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer
        self._attach()  # before Lightning loads a checkpoint (ckpt_path given directly)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.world_size > 1:  # every rank would run its own controller and diverge
            raise ConfigError(
                "CarbonAwareCallback runs on one process; for DDP use "
                "caftm.integrations.torch.CarbonAwareTraining"
            )
        self.stop_request = None
        self._last_step = -1
        if not isinstance(trainer.strategy.checkpoint_io, CaftmCheckpointIO):
            raise ConfigError(
                "CarbonAwareCallback needs Trainer(plugins=[callback.checkpoint_io]) so that "
                "checkpoints go to caftm's store"
            )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.allow_unsaved_state:
            _refuse_unresumable_loaders(trainer)  # before the controller starts
        self._trainer = trainer
        if trainer.global_step == 0:
            notice_fresh_start(self.store)
        self.session.start()
        self._start_step = trainer.global_step  # restored by now (0: a fresh start)
        self._write_status(force=True)
        if self._rng_to_restore is not None:
            restore_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        def save(step: int) -> None:
            self._saved_at_epoch_end = batch_idx + 1 >= trainer.num_training_batches
            for loader in _train_loaders(trainer):
                samples_used = (batch_idx + 1) * (loader.batch_size or 1)
                loader.mark_position(trainer.current_epoch, samples_used)
            trainer.save_checkpoint(f"{_PREFIX}{step}")

        if trainer.global_step == self._last_step:
            return  # gradient accumulation: no optimiser step in this batch
        self._last_step = trainer.global_step
        stop = self.session.after_step(trainer.global_step, lambda: save(trainer.global_step))
        if stop is not None:
            self.stop_request = stop
            trainer.should_stop = True
        self._write_status(force=stop is not None)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        try:
            self.session.close(
                status=RunStatus.FINISHED if self.stop_request is None else RunStatus.SUSPENDED
            )
        finally:
            self._end(self.stop_request or StopRequest(Outcome.COMPLETED, trainer.global_step))

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        try:
            self.session.close(status=RunStatus.FAILED)
        finally:
            self._end(None)


def _all_train_loaders(trainer: pl.Trainer) -> list[Any]:
    loaders = trainer.train_dataloader
    if loaders is None:
        return []
    if isinstance(loaders, dict):
        return list(loaders.values())
    if isinstance(loaders, list | tuple):
        return list(loaders)
    return [loaders]


def _train_loaders(trainer: pl.Trainer) -> list[ResumableDataLoader]:
    """The training loaders whose position a checkpoint records."""
    return [loader for loader in _all_train_loaders(trainer)
            if isinstance(loader, ResumableDataLoader)]  # fmt: skip


def _refuse_unresumable_loaders(trainer: pl.Trainer) -> None:
    """Refuse training data whose position a checkpoint cannot record.

    Raises:
        ConfigError: a training loader is not a :class:`ResumableDataLoader`.
    """
    for loader in _all_train_loaders(trainer):
        if not isinstance(loader, ResumableDataLoader):
            sampler = type(getattr(loader, "sampler", None)).__name__
            raise ConfigError(
                f"the training DataLoader (sampler {sampler}) is not a ResumableDataLoader: a "
                "resume would restart its epoch and draw another order; pass "
                "ResumableDataLoader(dataset, sampler=ResumableSampler(len(dataset), ...)) as "
                f"train_dataloaders, or CarbonAwareCallback(..., {OPT_OUT}) to accept that"
            )
