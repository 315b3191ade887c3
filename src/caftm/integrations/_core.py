"""What every integration shares: how a run segment ends, and the controller's side effects.

:class:`ControllerSession` binds a :class:`~caftm.control.Controller` to one training loop by
giving it :class:`~caftm.control.hooks.Hooks`:

====================  ====================================================================
controller action     what happens
====================  ====================================================================
``ApplySetting``      the GPU knob is set (snapped to a supported value) or restored
``Checkpoint``        the integration's ``save`` runs; an exception reports failure
``Migrate(dest)``     the segment stops, outcome ``MOVED`` (the executor restarts at ``dest``)
``Pause(until_s)``    sleep in place until ``until_s`` (``pause_in_place``), else the segment
                      stops, outcome ``PAUSED``
====================  ====================================================================

The controller's decision loop runs inside :meth:`~caftm.control.Controller.step`; a stop
unwinds out of it as soon as the hook fires, so a checkpoint is always complete before a stop is
requested, and nothing runs after the stop in this process.

The job's accelerated clock (:mod:`caftm.clock`), where the controller runs on one, runs from
each training step and is held from each checkpoint and from the session's close: starting,
checkpointing and stopping take their wall duration on the job's timeline, not grid hours.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from caftm._notice import notice
from caftm.clock import AcceleratedClock, clock_speed
from caftm.control.controller import Controller
from caftm.control.hooks import Hooks
from caftm.control.states import utc_from_s
from caftm.errors import CaftmError
from caftm.gpu.knob import GpuKnob
from caftm.jobs.protocol import Outcome, StopRequest
from caftm.records import RunStatus

__all__ = ["ControllerSession", "Outcome", "StopRequest", "apply_knob_setting"]

log = logging.getLogger(__name__)


class _SegmentEnd(CaftmError):
    """Unwinds out of ``Controller.step`` when a hook ends the segment (never escapes)."""

    def __init__(self, request: StopRequest) -> None:
        super().__init__(f"segment ends: {request.outcome.value}")
        self.request = request


SaveFn = Callable[[], None]


def apply_knob_setting(knob: GpuKnob | None, setting: float | None) -> None:
    """Put a controller's GPU setting into force on ``knob``.

    Args:
        knob: the GPU knob (None: the setting is only logged).
        setting: the clock (MHz) or power limit (W), snapped to a supported value; None
            restores the device defaults.
    """
    if knob is None:
        log.info("GPU setting %s requested; no knob, nothing changed", setting)
    elif setting is None:
        knob.restore()
    else:
        knob.set(setting, snap=True)


class ControllerSession:
    """Runs one controller's side effects for one training loop.

    Args:
        controller: the controller; its hooks are replaced (``on_event`` and ``resume`` kept).
        knob: the GPU knob for ``ApplySetting`` (None: settings are only logged).
        pause_in_place: on ``Pause``, sleep in this process (True) or stop (False).
        refresher_thread: let the controller poll intensities on its background thread (False:
            the caller drives ``refresh_once``, as tests and simulations do).
        sleep: the sleep function (s), injectable for tests.
        clock: POSIX time in s.
    """

    def __init__(
        self,
        controller: Controller,
        *,
        knob: GpuKnob | None = None,
        pause_in_place: bool = False,
        refresher_thread: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.controller = controller
        self.knob = knob
        self.pause_in_place = pause_in_place
        self.refresher_thread = refresher_thread
        self._sleep = sleep
        self._clock = clock
        job_clock = controller._clock
        #: the job's accelerated clock: runs while steps run, held otherwise (None: real time)
        self.job_clock = job_clock if isinstance(job_clock, AcceleratedClock) else None
        self._save: SaveFn | None = None
        self._step = 0
        self.checkpoints_taken = 0
        #: set (e.g. by a signal handler) to checkpoint and stop after the current step
        self.preempt_requested = False
        #: set by an integration that can write a checkpoint into another site's store: called
        #: with the destination before the checkpoint of a move is taken
        self.on_move_planned: Callable[[str], None] | None = None
        #: while that checkpoint is taken: the site training moves to once it is complete
        self.moving_to: str | None = None
        #: set by the integration's save when it wrote the checkpoint into that site's store
        self.written_to: str | None = None
        old = controller.hooks
        controller.hooks = Hooks(
            apply_setting=self._apply_setting,
            checkpoint=self._checkpoint,
            migrate=self._migrate,
            pause=self._pause,
            resume=old.resume,
            on_event=old.on_event,
        )

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the controller (after any restore, before the first step).

        When starting fails (the ledger cannot be written, ...), what was already started (the
        knob, the controller's refresher thread) is closed again before the error propagates.
        """
        if self.knob is not None:
            self.knob.start()
        try:
            self.controller.start(run_refresher_thread=self.refresher_thread)
        except BaseException:
            self._undo_start()
            raise

    def _undo_start(self) -> None:
        try:
            self.controller.close(status=RunStatus.FAILED)
        except Exception:
            log.exception("closing the controller after its failed start failed too")
        finally:
            if self.knob is not None:
                self.knob.close()

    def close(self, *, status: RunStatus = RunStatus.FINISHED) -> None:
        """Close the controller's run and restore the GPU defaults (idempotent); the job's
        clock is held from here (the process ends)."""
        self.hold_clock()
        try:
            self.controller.close(status=status)
        finally:
            if self.knob is not None:
                self.knob.close()

    # -- the step path ---------------------------------------------------------------------
    def after_step(self, step: int, save: SaveFn) -> StopRequest | None:
        """Count one completed mini-batch with the controller and run what it decides.

        Args:
            step: completed steps so far (checkpoint label; the controller counts its own).
            save: saves a complete checkpoint of the state after ``step``; raises on failure.

        Returns:
            A stop request (the loop must stop now), or None to carry on.
        """
        self._save, self._step = save, step
        self.written_to = None
        if self.job_clock is not None:
            self.job_clock.run()  # no-op while it runs already
        try:
            self.controller.step()
            if self.preempt_requested:  # SIGTERM/SIGINT: a complete checkpoint, then stop
                self.controller.preempt()
                return StopRequest(Outcome.PREEMPTED, step)
        except _SegmentEnd as end:
            return end.request
        finally:
            self._save = None
        return None

    def hold_clock(self) -> None:
        """Hold the job's accelerated clock until the next step (a checkpoint is written, the
        process stops); nothing on real time."""
        if self.job_clock is not None:
            self.job_clock.hold()

    def follow_clock(self, text: str) -> None:
        """Take the job's accelerated clock as the supervisor has it now (its ``CAFTM_CLOCK``
        value), in place: the controller and its refresher read the same clock. Nothing on
        real time.

        Raises:
            ConfigError: the text is malformed.
        """
        if self.job_clock is not None:
            self.job_clock.follow(text)

    # -- checkpoint content ----------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        """The controller's state (for ``TrainingState(stateful=...)``)."""
        return self.controller.state_dict()

    def load_state_dict(self, state_dict: dict[str, object], /) -> None:
        """Restore the controller's state (before it starts)."""
        self.controller.load_state_dict(state_dict)

    # -- hooks -----------------------------------------------------------------------------
    def _apply_setting(self, setting: float | None) -> None:
        apply_knob_setting(self.knob, setting)

    def _checkpoint(self) -> None:
        if self._save is None:
            raise CaftmError("checkpoint requested outside a training step")
        planned = self.controller.planned_move() if self.on_move_planned is not None else None
        if planned is not None and self.on_move_planned is not None:
            self.on_move_planned(planned)
        self.moving_to = planned
        self.hold_clock()  # writing it takes its wall time on the job's timeline
        try:
            self._save()
        finally:
            self.moving_to = None
        self.checkpoints_taken += 1

    def _save_here(self) -> None:
        """The checkpoint went to a site training does not go to after all: write it here too."""
        if self.written_to is not None and self._save is not None:
            log.info("step %d: the policy changed its plan; checkpointing here too", self._step)
            self.written_to = None
            self._save()

    def _migrate(self, dest: str) -> None:
        if self.written_to != dest:
            self._save_here()
        notice("step %d: checkpoint complete, moving to %s", self._step, dest)
        raise _SegmentEnd(StopRequest(Outcome.MOVED, self._step, dest=dest))

    def _pause(self, until_s: float) -> None:
        self._save_here()
        if not self.pause_in_place:
            # a supervisor re-checks the grid itself while no worker runs: hand it the pause's
            # end (the deadline-bound latest start), not the controller's next re-check
            planned = self.controller.control_state.pause_until_s
            if math.isfinite(planned) and planned > until_s:
                until_s = planned
            notice("step %d: checkpoint complete, pausing until %s", self._step, _when(until_s))
            raise _SegmentEnd(StopRequest(Outcome.PAUSED, self._step, until_s=until_s))
        wait_s = max(0.0, until_s - self._clock())
        notice("step %d: pausing in place until %s", self._step, _when(until_s))
        if self.job_clock is not None:
            self.job_clock.run()  # waiting is grid time: it passes at the clock's speed
        self._sleep(wait_s / clock_speed(self._clock))


def _when(time_s: float) -> str:
    """A POSIX time as readable UTC text (never a raw epoch number in output)."""
    return utc_from_s(time_s).strftime("%Y-%m-%d %H:%M UTC")
