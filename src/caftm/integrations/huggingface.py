"""Hugging Face ``Trainer`` integration: a ``TrainerCallback`` that checkpoints into caftm's store.

Usage::

    callback = CarbonAwareTrainerCallback(ControllerSession(controller), store)
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    trainer.train(resume_from_checkpoint=callback.resume_checkpoint(tmp_dir))
    if callback.stop_request: ...                     # moved or paused

After every optimiser step (``on_step_end``) the controller is consulted. When it checkpoints,
the callback captures, right then and in this process, what the Trainer's own resume reads —
the model's weights, optimiser and scheduler states, the global RNGs and the ``TrainerState`` —
and saves it into caftm's store (safetensors + JSON, sha256 manifest), with the controller's
state. A move or pause then sets ``control.should_training_stop``.

Resuming uses the Trainer's own ``resume_from_checkpoint`` (which skips the batches already
seen and puts the RNGs back where the uninterrupted run had them, loading every file with
``torch.load(weights_only=True)``): :meth:`CarbonAwareTrainerCallback.resume_checkpoint`
verifies the latest checkpoint in the store and writes it out as a Trainer checkpoint folder.
Under fp16 the Trainer's ``GradScaler`` (reached through the accelerated optimiser's
``scaler``) is captured too and written back as the Trainer's ``scaler.pt``.

Under ``caftm run`` the callback keeps the supervisor's live status (step, step restored,
controller) and writes how the leg ended; its fate lines (a checkpoint skipped as damaged, a
fresh start although the store holds checkpoints) reach the supervisor's terminal.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.errors import CheckpointError, ConfigError
from caftm.integrations._core import ControllerSession, Outcome, StopRequest
from caftm.integrations._state import TreeHolder
from caftm.integrations._supervised import SupervisorReport, notice_fresh_start
from caftm.records import RunStatus

__all__ = ["CarbonAwareTrainerCallback"]

log = logging.getLogger(__name__)

_WEIGHTS = "model.safetensors"
_OPTIMIZER = "optimizer.pt"
_SCHEDULER = "scheduler.pt"
_SCALER = "scaler.pt"
_RNG = "rng_state.pth"
_TRAINER_STATE = "trainer_state.json"


class CarbonAwareTrainerCallback(TrainerCallback):
    """Consults the CAFTM controller after every optimiser step; checkpoints and stops on its word.

    Args:
        session: the controller and its side effects; its state travels in every checkpoint.
        store: where checkpoints go.

    Attributes:
        stop_request: why the last ``train`` stopped early (None: it ran to its end).
    """

    def __init__(self, session: ControllerSession, store: CheckpointStore) -> None:
        self.session = session
        self.store = store
        self.stop_request: StopRequest | None = None
        self._started = False
        #: the supervisor's live status and the leg's outcome (nothing when run alone)
        self._report = SupervisorReport()
        self._start_step: int | None = None
        self._state: TrainerState | None = None

    # -- resume --------------------------------------------------------------------------------
    def resume_checkpoint(self, directory: str | Path) -> str | None:
        """Write the latest complete checkpoint as a Trainer checkpoint folder under
        ``directory``; returns its path for ``resume_from_checkpoint`` (None: fresh start).

        Also restores the controller's state. Raises CheckpointError for a checkpoint that is
        not a Hugging Face one.
        """
        self._attach()  # a checkpoint skipped as damaged is a fate line
        holder = TreeHolder()
        state = TrainingState(stateful={"huggingface": holder}, rng=False)
        info = self.store.restore_latest(state)
        if info is None:
            return None
        tree = holder.tree
        if not isinstance(tree, dict) or not {"model", "trainer_state", "controller"} <= set(tree):
            raise CheckpointError(f"checkpoint {info.path} is not a Hugging Face Trainer one")
        folder = Path(directory) / f"checkpoint-{info.step}"
        folder.mkdir(parents=True, exist_ok=True)
        # weights: own copies, so tied (shared) tensors are written as separate entries
        weights = {name: t.detach().clone().contiguous() for name, t in tree["model"].items()}
        save_file(weights, str(folder / _WEIGHTS), metadata={"format": "pt"})
        for name, key in (
            (_OPTIMIZER, "optimizer"),
            (_SCHEDULER, "scheduler"),
            (_SCALER, "scaler"),
            (_RNG, "rng"),
        ):
            if tree.get(key) is not None:
                torch.save(tree[key], folder / name)
        (folder / _TRAINER_STATE).write_text(str(tree["trainer_state"]), encoding="utf-8")
        self.session.load_state_dict(tree["controller"])
        log.info("resuming from caftm checkpoint %s (step %d) via %s", info.path, info.step, folder)
        return str(folder)

    # -- the supervisor's view -----------------------------------------------------------------
    def _attach(self) -> None:
        self._report.attach(on_record=lambda: self._write_status(force=True))

    def _write_status(self, *, force: bool = False) -> None:
        if not self._report.supervised:
            return
        request = self.stop_request
        outcome = Outcome.RUNNING if request is None else request.outcome
        fields: dict[str, object] = {"outcome": outcome.value}
        if self._state is not None:
            fields["step"] = self._state.global_step
            fields["total_steps"] = self._state.max_steps or None
        if self._start_step is not None:
            fields["start_step"] = self._start_step  # the step restored (0: a fresh start)
        started = self._start_step is not None
        self._report.write(fields, self.session if started else None, force=force)

    # -- hooks ---------------------------------------------------------------------------------
    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if args.world_size > 1:  # checked before the controller starts, not on every step
            raise ConfigError(
                "CarbonAwareTrainerCallback runs on one process; for DDP use "
                "caftm.integrations.torch.CarbonAwareTraining"
            )
        self.stop_request = None
        self._state = state
        self._attach()
        if not self._started:
            if state.global_step == 0:  # the Trainer restored its checkpoint by now
                notice_fresh_start(self.store)
            self.session.start()
            self._started = True
            self._start_step = state.global_step
            self._write_status(force=True)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl:
        def save() -> None:
            tree = _capture(state, kwargs)
            tree["controller"] = self.session.state_dict()
            holder = TreeHolder(tree)
            self.store.save(
                TrainingState(stateful={"huggingface": holder}, rng=False), step=state.global_step
            )

        stop = self.session.after_step(state.global_step, save)
        if stop is not None:
            self.stop_request = stop
            control.should_training_stop = True
        self._write_status(force=stop is not None)
        return control

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        status = (
            RunStatus.FINISHED if self.stop_request is None
            else RunStatus(self.stop_request.outcome.value)
        )  # fmt: skip
        try:
            self.session.close(status=status)
        finally:
            self._started = False
            self._report.write_outcome(
                self.stop_request or StopRequest(Outcome.COMPLETED, state.global_step)
            )
            self._write_status(force=True)
            self._report.detach()


def _capture(state: TrainerState, objects: dict[str, Any]) -> dict[str, Any]:
    """What ``Trainer`` reads on resume, from the live objects, in its formats."""
    model, optimizer = objects.get("model"), objects.get("optimizer")
    if model is None or optimizer is None:
        raise CheckpointError("the Trainer passed no model or optimizer to the callback")
    model = getattr(model, "module", model)  # unwrap DataParallel-style wrappers
    scheduler = objects.get("lr_scheduler")
    scaler = getattr(optimizer, "scaler", None)  # accelerate's optimiser under fp16
    rng: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "cpu": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.random.get_rng_state()
    return {
        "model": dict(model.state_dict()),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng,
        "trainer_state": json.dumps(dataclasses.asdict(state), indent=2, sort_keys=True),
    }
