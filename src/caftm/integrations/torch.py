"""Plain PyTorch integration: a context manager and one ``step()`` call per mini-batch.

Usage::

    sampler = ResumableSampler(len(dataset), shuffle=True, seed=1)
    loader = DataLoader(dataset, batch_size=32, sampler=sampler, generator=torch.Generator())
    with CarbonAwareTraining(config, model=model, optimizer=opt, scheduler=sched,
                             scaler=scaler, sampler=sampler) as caftm:
        while caftm.running:                  # False once stopped or at config.total_steps
            for images, labels in loader:     # resumes mid-epoch after a restore
                train_one_batch(images, labels)
                caftm.step()
                if not caftm.running:
                    break
    if caftm.stop_request is not None:        # MOVED (restart at .dest) or PAUSED
        ...

On entering, the latest complete checkpoint in ``config.checkpoint.url`` (or ``store``) is
restored into the given objects — model, optimiser, scheduler, scaler, sampler, the global RNGs
and the controller's own state — and :attr:`CarbonAwareTraining.start_step` says where training
resumes. Give the ``DataLoader`` its own ``generator=``: creating an iterator otherwise draws
from the global RNG, which a resumed run does at a different point.

Under ``torch.distributed`` (world size > 1) rank 0 decides and every rank follows at the same
step (see :mod:`caftm.integrations.ddp`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from caftm._notice import notice
from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.checkpoint.layout import rank_dir_name
from caftm.checkpoint.owner import JobIdentity
from caftm.checkpoint.state import Stateful
from caftm.clock import CLOCK_ENV
from caftm.control.config import ControllerConfig
from caftm.control.controller import Controller
from caftm.errors import CheckpointError, ConfigError
from caftm.gpu import GpuBackend
from caftm.integrations._core import ControllerSession, Outcome, StopRequest
from caftm.integrations._gpu import GpuSetup
from caftm.integrations._signals import PreemptionSignals
from caftm.integrations._supervised import SupervisorReport, notice_fresh_start
from caftm.integrations._unsaved import refuse_unsaved_scheduler
from caftm.integrations.ddp import DistributedSteps, world
from caftm.jobs.protocol import ENV_SITE_STORES
from caftm.jobs.standby import go_clock, wait_for_go
from caftm.records import RunStatus
from caftm.signals.base import IntensitySource

__all__ = ["CarbonAwareTraining"]

log = logging.getLogger(__name__)


class CarbonAwareTraining:
    """Carbon-aware, resumable training around a plain PyTorch loop.

    Args:
        config: the controller configuration (sites, θ, policy, checkpoint URL, GPU knob).
        model, optimizer, scheduler, scaler, sampler: the loop's objects (any may be None).
        stateful: more named objects with ``state_dict``/``load_state_dict``.
        extra: your own JSON-able state, restored in place.
        store: where checkpoints go (default: ``config.checkpoint``'s URL and ``keep_last``).
        controller: a ready controller (default: built from ``config``; rank 0 only).
        source: the intensity source for the default controller.
        gpu: a :class:`GpuSetup`, a backend or backend name (``"auto"``: NVML, else the
            SIMULATED H100), or None to leave the GPU alone.
        pause_in_place: on the controller's Pause, sleep here (True) or stop (False).
        refresher_thread: poll intensities on a background thread (False: the caller drives
            the controller's refresher, as in tests).
        use_ledger: record the run in the ledger (default controller only).
        knob_state_dir: where the GPU knob keeps its crash-recovery file.
        checkpoint_every_steps: also checkpoint every this many steps, so a crash loses at most
            that much work (asynchronously when ``config.checkpoint.async_save``); None: only
            when the controller suspends.
        allow_unsaved_state: start although an LR scheduler is bound to ``optimizer`` but not
            given (its schedule then restarts at every resume). A ``GradScaler`` cannot be
            found from the optimiser: pass it as ``scaler``.

    Raises:
        ConfigError: An argument has the wrong type or value, or state would be lost at a
            resume (an unsaved scheduler) without ``allow_unsaved_state``.
    """

    def __init__(
        self,
        config: ControllerConfig,
        *,
        model: torch.nn.Module | None = None,
        optimizer: Stateful | None = None,
        scheduler: Stateful | None = None,
        scaler: Stateful | None = None,
        sampler: Stateful | None = None,
        stateful: dict[str, Stateful] | None = None,
        extra: dict[str, Any] | None = None,
        store: CheckpointStore | None = None,
        controller: Controller | None = None,
        source: IntensitySource | None = None,
        gpu: GpuSetup | GpuBackend | str | None = "auto",
        pause_in_place: bool = False,
        refresher_thread: bool = True,
        use_ledger: bool = True,
        knob_state_dir: Path | None = None,
        checkpoint_every_steps: int | None = None,
        allow_unsaved_state: bool = False,
    ) -> None:
        _check_arguments(checkpoint_every_steps, stateful, store, gpu)
        if not allow_unsaved_state:
            refuse_unsaved_scheduler(optimizer, scheduler, stateful or {})
        self.checkpoint_every_steps = checkpoint_every_steps
        self._saved_step = -1
        self._entered = False  # inside the with block: step() may run
        self._restored = False  # save() may run (before the restore it would overwrite work)
        self.config = config
        self.rank, self.world_size = world()
        owner = JobIdentity.from_env()  # the supervisor's job; None when run alone
        self.store = store or CheckpointStore(
            _rank_url(config.checkpoint.url, self.rank, self.world_size),
            keep_last=max(2, config.checkpoint.keep_last),
            owner=owner,
        )
        self.total_steps = config.total_steps
        self.start_step = 0
        self.steps_done = 0
        self.stop_request: StopRequest | None = None
        self._loop_left_cleanly = False
        self.gpu: GpuSetup | None = None
        if isinstance(gpu, GpuSetup):
            self.gpu = gpu
        elif gpu is not None:
            self.gpu = GpuSetup.from_config(config, gpu, knob_state_dir=knob_state_dir)
        #: under a supervisor, fate lines (warnings) go into the status it prints from
        self._report = SupervisorReport(rank=self.rank)
        #: True when caftm tunes the GPU; False observes only (``gpu.control: off``)
        self.controls_gpu = self.gpu is not None and config.gpu.control == "auto"
        if self.gpu is not None and self.controls_gpu and not self.gpu.can_set:
            with self._report.recording():
                notice(
                    "%s: this process may not change GPU settings (needs root or "
                    "CAP_SYS_ADMIN); falling back to gpu.control: off (energy metered, moves "
                    "and pauses still apply)",
                    self.gpu.describe(),
                    warning=True,
                )
            self.controls_gpu = False
        tuning = self.gpu if self.controls_gpu else None
        self.session: ControllerSession | None = None
        if self.rank == 0:
            if controller is None:
                controller = Controller.from_config(
                    config,
                    source=source,
                    optimizer=tuning.optimizer if tuning else None,
                    meter=self.gpu.meter if self.gpu else None,
                    weights=tuning.weights if tuning else None,
                    use_ledger=use_ledger,
                    simulated=bool(self.gpu and self.gpu.simulated),
                )
            self.session = ControllerSession(
                controller,
                knob=tuning.knob if tuning else None,
                pause_in_place=pause_in_place,
                refresher_thread=refresher_thread,
                clock=controller._clock,
            )
        objects = dict(stateful or {})
        if self.session is not None:
            objects["caftm"] = self.session
        shared = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler}
        leads = self.rank == 0
        self.state = TrainingState(
            sampler=sampler,
            stateful=objects,
            extra=extra if extra is not None else {},
            **(shared if leads else {}),  # type: ignore[arg-type]
        )
        # ranks other than 0 read the shared objects from rank 0's checkpoint of the same step
        self._shared_state = None if leads else TrainingState(rng=False, **shared)  # type: ignore[arg-type]
        self._shared_store = None
        if not leads:
            self._shared_store = CheckpointStore(
                _rank_url(config.checkpoint.url, 0, self.world_size), keep_last=None, owner=owner
            )
        self._owner = owner
        self._moving_to: str | None = None
        if self.session is not None and self.world_size == 1:
            self.session.on_move_planned = self._announce_move
        self._steps = DistributedSteps(self.session, self.rank, self.world_size, tuning)
        self._signals = PreemptionSignals(self._on_signal)

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> CarbonAwareTraining:
        self._report.attach()  # until __exit__
        try:
            return self._enter()
        except BaseException:
            self._report.detach()
            raise

    def _enter(self) -> CarbonAwareTraining:
        # a standby (started before its move was done) waits for its go, reading and verifying
        # the checkpoint as soon as it is complete in its store
        prefetch = self.store.prefetch_latest if self.world_size == 1 else None
        go = wait_for_go(while_waiting=prefetch)
        if go is not None:
            self._take_job_clock(go_clock(go))
        self.start_step = self.steps_done = self._steps.restore(
            self.store, self.state, self._shared_store, self._shared_state
        )
        # the other ranks' fate lines (a checkpoint of theirs skipped, ...) go into rank 0's
        self._steps.gather_notices(self._report.notices)
        if self.start_step == 0 and self.rank == 0:
            notice_fresh_start(self.store)
        if self.gpu is not None:
            self.gpu.meter.start()
            log.info("%s", self.gpu.describe())
        if self.session is not None:
            try:
                self.session.start()  # closes what it started itself when it fails
            except BaseException:
                if self.gpu is not None:
                    self.gpu.meter.stop()
                self.store.close()
                raise
        log.info(
            "training starts at step %d (rank %d of %d)",
            self.start_step,
            self.rank,
            self.world_size,
        )
        self._entered = self._restored = True
        self._signals.install()
        self._write_status(force=True)
        if self._report.notices is not None:  # later fate lines reach the supervisor at once
            self._report.notices.on_record = lambda: self._write_status(force=True)
        return self

    def _take_job_clock(self, text: str | None) -> None:
        """A standby takes the job's clock as it stood at its go: the one it started with was
        read while the source worker still trained, and the job's clock must not run backwards
        from one leg to the next."""
        if text is None:
            return
        os.environ[CLOCK_ENV] = text  # what reads the clock from here on reads this one
        if self.session is not None:
            self.session.follow_clock(text)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._entered = False
        if self.session is not None:
            self.session.hold_clock()  # the last checkpoint and the process's end: 1×
        self._signals.restore()
        self._loop_left_cleanly = exc_type is None  # no stop request: training is complete
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        if exc_type is None and self.outcome is Outcome.COMPLETED:
            self.save()  # the end is a checkpoint too: running the script again trains nothing
        status = (
            RunStatus.INTERRUPTED if interrupted
            else RunStatus.FAILED if exc_type
            else RunStatus(self.outcome.value)
        )  # fmt: skip
        try:
            if self.session is not None:
                self.session.close(status=status)
            if self.gpu is not None:
                self.gpu.meter.stop()
                if self.session is None and self.controls_gpu:
                    self.gpu.knob.close()
        finally:
            self.store.close()
            self._report.detach()
        if exc_type is None:
            request = self.stop_request or StopRequest(Outcome.COMPLETED, self.steps_done)
            self._report.write_outcome(request)
        # the last word, whatever ended the loop: the step reached, the job's clock held
        self._write_status(force=True)

    # -- the step path -----------------------------------------------------------------------
    def step(self) -> None:
        """Count one completed mini-batch; checkpoint and stop when the controller says so.

        Raises:
            ConfigError: Called outside the ``with`` block.
        """
        if not self._entered:
            self._refuse("step")
        if self.stop_request is not None:
            return
        self.steps_done += 1
        if self.gpu is not None:
            self.gpu.run_simulated_step()
        self.stop_request = self._steps.after_step(self.steps_done, self.save)
        if self.stop_request is None:
            self._moving_to = None  # a move announced but not made (the checkpoint failed)
        self._write_status()
        every = self.checkpoint_every_steps
        due = every is not None and self.steps_done % every == 0
        if due and self.stop_request is None and self.steps_done != self._saved_step:
            if self.session is not None:
                self.session.hold_clock()  # until the next step: writing takes its wall time
            if self.config.checkpoint.async_save:
                self.store.save_async(self.state, step=self.steps_done)
            else:
                self.store.save(self.state, step=self.steps_done)
            self._saved_step = self.steps_done

    def save(self) -> None:
        """Save a complete checkpoint of the current step now (every rank, in DDP).

        Raises:
            ConfigError: Called before entering the ``with`` block (nothing restored yet).
        """
        if not self._restored:
            self._refuse("save")
        dest = self.session.moving_to if self.session is not None else None
        if dest is not None and self._save_at(dest):
            return
        if self.steps_done != self._saved_step:
            self.store.save(self.state, step=self.steps_done)
            self._saved_step = self.steps_done

    def _announce_move(self, dest: str) -> None:
        """The checkpoint about to be taken is a move's: tell the supervisor (its status)."""
        self._moving_to = dest
        self._write_status(force=True)

    def _save_at(self, site: str) -> bool:
        """Write the checkpoint straight into ``site``'s store (``$CAFTM_SITE_STORES``); False
        when there is none or it cannot take it (the checkpoint is then written here)."""
        try:
            url = json.loads(os.environ.get(ENV_SITE_STORES) or "{}").get(site)
        except (ValueError, AttributeError):
            url = None
        if not isinstance(url, str) or url == self.store.url:
            return False
        try:
            with CheckpointStore(url, keep_last=self.store.keep_last, owner=self._owner) as store:
                store.save(self.state, step=self.steps_done)
        except (CheckpointError, ConfigError) as e:
            notice("cannot write the checkpoint of step %d straight into %s's store (%s); "
                   "writing it here", self.steps_done, site, e, warning=True)  # fmt: skip
            return False
        assert self.session is not None
        self.session.written_to = site
        return True

    def _on_signal(self, signum: int) -> None:
        """SIGTERM/SIGINT: checkpoint at the end of this mini-batch and stop (rank 0 decides)."""
        name = signal.Signals(signum).name
        if self.rank == 0:
            notice(  # the step in progress completes first: its checkpoint is of the next
                "%s received: checkpointing after step %d and stopping (again to abort)",
                name,
                self.steps_done + 1,
            )
        if self.session is not None:
            self.session.preempt_requested = True

    def _write_status(self, *, force: bool = False) -> None:
        """Keep the supervisor's live view current (at most every half second)."""
        if not self._report.supervised:
            return
        fields: dict[str, object] = {
            "step": self.steps_done,
            "total_steps": self.total_steps,
            "outcome": self.outcome.value,
            "simulated_gpu": self.simulated_gpu,
            "gpu_control": "auto" if self.controls_gpu else "off",
            "knob": self.config.gpu.knob.value,
        }
        if self._restored:
            fields["start_step"] = self.start_step  # the step restored (0: a fresh start)
        if self._moving_to is not None:
            fields["moving_to"] = self._moving_to
        self._report.write(fields, self.session, force=force)

    @staticmethod
    def _refuse(method: str) -> None:
        raise ConfigError(
            f"CarbonAwareTraining.{method}() called outside its `with` block; "
            "use `with CarbonAwareTraining(...) as caftm:` and call it inside"
        )

    # -- what the loop reads -----------------------------------------------------------------
    @property
    def should_stop(self) -> bool:
        """The controller asked to stop (checkpoint taken; see :attr:`stop_request`)."""
        return self.stop_request is not None

    @property
    def running(self) -> bool:
        """Keep training: not stopped, and ``config.total_steps`` (if set) not reached."""
        if self.stop_request is not None:
            return False
        return self.total_steps is None or self.steps_done < self.total_steps

    @property
    def outcome(self) -> Outcome:
        """RUNNING, COMPLETED, MOVED, PAUSED or PREEMPTED."""
        if self.stop_request is not None:
            return self.stop_request.outcome
        if self.total_steps is not None and self.steps_done >= self.total_steps:
            return Outcome.COMPLETED
        return Outcome.COMPLETED if self._loop_left_cleanly else Outcome.RUNNING

    @property
    def stopped_by_signal(self) -> int | None:
        """The signal (SIGTERM, SIGINT) that preempted training, if one did."""
        return self._signals.received

    @property
    def simulated_gpu(self) -> bool:
        """True when the GPU is SIMULATED (no NVIDIA GPU here)."""
        return self.gpu is not None and self.gpu.simulated


def _check_arguments(every: Any, stateful: Any, store: Any, gpu: Any) -> None:
    """Refuse arguments of the wrong type up front, not deep inside the first step.

    Raises:
        ConfigError: One of them has the wrong type or value.
    """
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ConfigError(f"checkpoint_every_steps must be an integer >= 1, got {every!r}")
    if stateful is not None and not isinstance(stateful, dict):
        raise ConfigError(f"stateful must be a dict, got {type(stateful).__qualname__}")
    if store is not None and not isinstance(store, CheckpointStore):
        raise ConfigError(
            f"store must be a CheckpointStore, got {type(store).__qualname__} "
            "(a path or URL goes in config.checkpoint.url, or CheckpointStore(url))"
        )
    if gpu is not None and not isinstance(gpu, GpuSetup | GpuBackend | str):
        raise ConfigError(
            "gpu must be a GpuSetup, a GpuBackend, a backend name or None, "
            f"got {type(gpu).__qualname__}"
        )


def _rank_url(url: str, rank: int, world_size: int) -> str:
    return url if world_size == 1 else f"{url.rstrip('/')}/{rank_dir_name(rank)}"
