"""The live controller: holds the state, reads the refresher, drives the optimiser, runs actions.

Call :meth:`Controller.step` after every mini-batch. In Tolerance it is a constant-time check:
one float read from the refresher (set by its thread), two comparisons against thresholds
precomputed off the step path, and a step counter — no lock, no call, no container built. Anything
else (a probe window ending, a reading leaving the band, a periodic re-check, a new poll) takes the
slow path, which builds an :class:`~caftm.control.states.Observation`, asks the policy (the pure
transition) and runs the returned actions through injected :class:`Hooks`. Every transition is
recorded as an :class:`~caftm.records.Event`, in memory and in the ledger.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import TYPE_CHECKING

from caftm._protocol_env import worker_leg
from caftm.control.config import ControllerConfig
from caftm.control.dispatch import dispatch
from caftm.control.hooks import GpuOptimizer, Hooks, WindowMeter
from caftm.control.observe import RefresherView, band, observe, outlooks, remaining_work_s
from caftm.control.planning import GpuCurve
from caftm.control.policies import Policy
from caftm.control.profiling import Profiler
from caftm.control.states import (
    Band,
    ControlState,
    Migrate,
    Observation,
    SiteOutlook,
    StartProfiling,
    Step,
    utc_from_s,
)
from caftm.control.threshold import ThresholdMode, ThresholdSpec
from caftm.control.windows import ClosedWindow, WindowLog
from caftm.errors import ConfigError
from caftm.gpu.base import KnobKind, Measurement
from caftm.gpu.cost import MAX_INTENSITY_G_PER_KWH, CostWeights
from caftm.records import Event, RunStatus, State
from caftm.signals.base import IntensitySource
from caftm.signals.refresher import IntensityRefresher

if TYPE_CHECKING:
    from caftm.ledger.spool import MeasurementWriter

log = logging.getLogger(__name__)

_INF = math.inf
_NEVER = sys.maxsize


class Controller:
    """The CAFTM controller of one training run.

    Args:
        policy: the decision policy (its rules carry dwell, deadline, move cost).
        refresher: the background intensity source (its ``site`` is the current site).
        threshold: how θ is computed.
        hooks: side effects.
        optimizer: the GPU optimiser (None: the GPU stays at its defaults).
        meter: energy windows (needed with an optimiser; without one windows record time only).
        weights: cost weights whose intensity is updated at each Scaling.
        knob: which GPU setting the optimiser tunes.
        ledger: where runs, windows and events are recorded (None: memory only).
        run_name: the ledger's name for the run.
        total_steps: steps in the whole job (gives the remaining work for deadlines/moves).
        steps_per_probe: steps per profiling window.
        window_steps: steps per measured window in Tolerance (accounting, drift check).
        drift_every_windows: check the GPU model for drift on every n-th window (a re-fit each).
        check_every_steps: at most this many steps between slow-path re-checks.
        power_w, idle_power_w: power estimates (W) until windows measure the real one.
        clock: POSIX seconds now (inject a fake one in tests and simulation).
        simulated: the run (GPU or signals) is simulated; recorded in the ledger.
        step_time_s: a first estimate of the step time, s (measured windows replace it).
    """

    def __init__(
        self,
        policy: Policy,
        refresher: IntensityRefresher,
        *,
        threshold: ThresholdSpec | None = None,
        hooks: Hooks | None = None,
        optimizer: GpuOptimizer | None = None,
        meter: WindowMeter | None = None,
        weights: CostWeights | None = None,
        knob: KnobKind = KnobKind.CLOCK,
        ledger: MeasurementWriter | None = None,
        run_name: str = "run",
        total_steps: int | None = None,
        steps_per_probe: int = 20,
        window_steps: int = 200,
        drift_every_windows: int = 5,
        check_every_steps: int = 100,
        power_w: float = 300.0,
        idle_power_w: float = 100.0,
        clock: Callable[[], float] | None = None,
        simulated: bool = False,
        step_time_s: float | None = None,
    ) -> None:
        self.policy = policy
        self.threshold = threshold or ThresholdSpec()
        self.hooks = hooks or Hooks()
        self.optimizer = optimizer if policy.optimises_gpu else None
        self.meter = meter
        self.weights = weights
        self.knob = knob
        self.ledger = ledger
        self.run_name = run_name
        self.total_steps = total_steps
        self.steps_per_probe = steps_per_probe
        self.window_steps = window_steps
        self.drift_every_windows = drift_every_windows
        self.check_every_steps = check_every_steps
        self.power_w = power_w
        self.idle_power_w = idle_power_w
        self.simulated = simulated
        self._clock: Callable[[], float] = clock or time.time
        self._refresher = refresher
        self._view = RefresherView(refresher)
        self.events: list[Event] = []
        self.run_id: str | None = None
        self._ctx = ControlState(State.SCALING, refresher.site, self._clock())
        # hot-path attributes (read by step() without locks)
        self._state = State.SCALING
        self._steps = 0
        self._check_at_step = 0
        self._low = -_INF
        self._high = _INF
        # slow-path bookkeeping
        self._started = False
        self._own_refresher = False
        self._profiler = Profiler(
            self.optimizer, meter, knob, steps_per_probe, self._apply_setting, self._use_probe
        )
        self._windows = WindowLog(meter, knob, ledger)
        self._drift = False
        self._checkpoint_ok: bool | None = None
        self._step_time_s: float | None = step_time_s
        self._curve: tuple[object, GpuCurve | None] | None = None
        self._plan_recorded: object = None
        self._windows_seen = 0
        refresher.add_listener(self._on_refresh)

    @classmethod
    def from_config(
        cls,
        config: ControllerConfig,
        *,
        source: IntensitySource | None = None,
        hooks: Hooks | None = None,
        optimizer: GpuOptimizer | None = None,
        meter: WindowMeter | None = None,
        weights: CostWeights | None = None,
        ledger: MeasurementWriter | None = None,
        use_ledger: bool = True,
        clock: Callable[[], float] | None = None,
        simulated: bool = False,
    ) -> Controller:
        """A controller as ``config`` describes it.

        Args:
            source: the intensity source (default: ``config.signals``' provider, with fallbacks).
            ledger: an open ledger (default: ``config.ledger.path`` or the default path, unless
                ``use_ledger`` is False).
            others: as for the constructor.

        Raises:
            ConfigError: a policy option is out of range, or the source or ledger cannot be set up.
        """
        policy = config.build_policy()
        if clock is None:  # the job's accelerated clock where a supervisor set one
            from caftm.clock import job_clock

            clock = job_clock()
        if source is None:
            from caftm.signals.registry import configured_source

            source = configured_source(config.signals.source, config.signals.trace_path)
        wants_forecast = policy.uses_forecast or config.threshold.mode is ThresholdMode.RELATIVE
        refresher = IntensityRefresher(
            source,
            config.site_zones(),
            config.start_site,
            interval_s=config.signals.refresh_interval_s,
            forecast_interval_s=config.signals.forecast_interval_s,
            want_forecast=wants_forecast,
            clock=clock,
        )
        if ledger is None and use_ledger:
            from caftm.ledger.spool import open_for_worker
            from caftm.ledger.store import default_ledger_path

            ledger = open_for_worker(config.ledger.path or default_ledger_path())
        gpu = config.gpu
        return cls(
            policy,
            refresher,
            threshold=config.threshold_spec(),
            hooks=hooks,
            optimizer=optimizer,
            meter=meter,
            weights=weights,
            knob=gpu.knob,
            ledger=ledger,
            run_name=config.ledger.run_name,
            total_steps=config.total_steps,
            steps_per_probe=gpu.steps_per_probe,
            window_steps=gpu.window_steps,
            drift_every_windows=gpu.drift_every_windows,
            check_every_steps=gpu.check_every_steps,
            power_w=gpu.power_w,
            idle_power_w=gpu.idle_power_w,
            clock=clock,
            simulated=simulated,
        )

    # -- public state --------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The current state."""
        return self._ctx.state

    @property
    def site(self) -> str:
        """Where training runs now."""
        return self._ctx.site

    @property
    def control_state(self) -> ControlState:
        """The whole decision state."""
        return self._ctx

    @property
    def steps_done(self) -> int:
        """Mini-batches counted by :meth:`step`."""
        return self._steps

    @property
    def ledger_records_lost(self) -> int:
        """Ledger records lost to a failing ledger (disk full, locked; a server that never came
        back) while training went on."""
        dropped = 0 if self.ledger is None else self.ledger.dropped_records
        return self._windows.unrecorded + dropped

    @property
    def energy_j(self) -> float:
        """Energy of the run's recorded windows so far (J)."""
        return self._windows.energy_j_total

    @property
    def carbon_g(self) -> float:
        """Carbon of the run's recorded windows so far (g)."""
        return self._windows.carbon_g_total

    @property
    def current_intensity_g_per_kwh(self) -> float:
        """The latest intensity at the current site (gCO2eq/kWh; NaN before the first reading)."""
        return self._refresher.current_intensity_g_per_kwh

    @property
    def setting(self) -> float | None:
        """The GPU setting in force (None: device default)."""
        return self._profiler.probing if self._ctx.state is State.SCALING else self._ctx.setting

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, *, run_refresher_thread: bool = True) -> Controller:
        """Take the first readings, open the run in the ledger and start Scaling; returns self."""
        if self._started:
            return self
        self._started = True
        if run_refresher_thread and not self._refresher.running:
            self._refresher.start()
            self._own_refresher = True
        elif self._refresher.version == 0:
            self._refresher.refresh_once()
        now = self._clock()
        if self.ledger is not None:
            job, leg = worker_leg()
            self.run_id = self._windows.run_id = self.ledger.start_run(
                name=self.run_name,
                policy=self.policy.name,
                site=self._ctx.site,
                started_at=utc_from_s(now),
                simulated=self.simulated,
                job=job,
                leg=leg,
            )
        self._ctx = replace(
            self._ctx, state=State.SCALING, site=self._refresher.site, entered_s=now
        )
        self._record(State.SCALING, State.SCALING, "run started", now)
        self._run_actions((StartProfiling(self._refresher.current_intensity_g_per_kwh),), now)
        self._loop(now)
        self._arm()
        return self

    def close(self, *, status: RunStatus = RunStatus.FINISHED) -> None:
        """End the run: restore GPU defaults, flush windows, close the ledger run (idempotent)."""
        if not self._started or self._ctx.state is State.DONE:
            return
        now = self._clock()
        self._profiler.abandon()
        self._end_window(now)
        self._use_window(self._windows.flush())
        obs = replace(self._observe(now, finished=True), end_status=status)
        self._apply(self.policy.decide(self._ctx, obs), obs)
        self._arm()
        self._windows.write(
            "run end",
            lambda ledger, run_id: ledger.end_run(run_id, ended_at=utc_from_s(now), status=status),
        )
        if self._windows.unrecorded:
            log.warning("%d ledger records were lost to a failing ledger", self._windows.unrecorded)
        if self._own_refresher:
            self._refresher.stop()

    def __enter__(self) -> Controller:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(status=RunStatus.FINISHED if exc_type is None else RunStatus.FAILED)

    # -- the step path ---------------------------------------------------------------------------
    def step(self) -> State:
        """Count one mini-batch; returns the state to train in (constant time in Tolerance)."""
        n = self._steps + 1
        self._steps = n
        if n < self._check_at_step:
            ci = self._refresher.current_intensity_g_per_kwh
            if not (ci < self._low or ci >= self._high):  # NaN (no reading yet) is no news
                return self._state
        return self._slow_step()

    def preempt(self) -> None:
        """The process was told to stop (SIGTERM/SIGINT): take a complete checkpoint now (the
        transition table's preemption row; the state is kept and no event is recorded).

        Raises:
            Exception: whatever the checkpoint hook raised (nothing is absorbed here).
        """
        now = self._clock()
        obs = replace(self._observe(now), preempted=True)
        self._apply(self.policy.decide(self._ctx, obs), obs)

    def planned_move(self) -> str | None:
        """Where training moves once the checkpoint being taken is complete (None: it stays or
        pauses): the policy asked ahead, nothing applied or recorded.

        Lets a worker write that checkpoint straight into the destination's store, and its
        supervisor start the destination's worker meanwhile.
        """
        if self._ctx.state is not State.SUSPEND:
            return None
        ctx, obs = self._ctx, replace(self._observe(self._clock()), checkpoint_ok=True)
        for _ in range(3):  # Suspend → Migration → Migrate(dest) or not
            step = self.policy.decide(ctx, obs)
            for action in step.actions:
                if isinstance(action, Migrate):
                    return action.dest
            if not step.changed:
                return None
            ctx = step.state
        return None

    def _on_refresh(self, _refresher: IntensityRefresher) -> None:
        self._check_at_step = 0  # new readings: re-check on the next step

    def _slow_step(self) -> State:
        if not self._started:
            self.start()
        now = self._clock()
        state = self._ctx.state
        try:
            if state is State.SCALING:
                self._advance_probe(now)
            elif state is State.TOLERANCE:
                opened = self._windows.open_since_step
                if opened is not None and self._steps - opened >= self.window_steps:
                    self._end_window(now)
                    self._open_window(now)
                self._loop(now)
            elif state is not State.DONE:
                self._loop(now)  # a hook unwound out of an earlier step mid-cycle: carry on
        finally:
            self._arm()  # even when a hook raises (e.g. to end the process after a move)
        return self._state

    def _arm(self) -> None:
        """Precompute the hot-path band and the next forced check for the current state."""
        state = self._ctx.state
        self._state = state
        n = self._steps
        if state is State.TOLERANCE:
            obs_band = self._band_now()
            low, high = -_INF, obs_band
            ref = self._ctx.scaling_intensity_g_per_kwh
            if self.optimizer is not None and math.isfinite(ref):
                fraction = self.policy.rules.reoptimize_ci_fraction
                low, high = ref * (1.0 - fraction), min(high, ref * (1.0 + fraction))
            ci = self._refresher.current_intensity_g_per_kwh
            if not low <= ci < high:  # out of band but the policy held (dwell, deadline)
                low, high = -_INF, _INF
            opened = self._windows.open_since_step
            window_end = _NEVER if opened is None else opened + self.window_steps
            self._low, self._high = low, high
            self._check_at_step = min(window_end, n + self.check_every_steps)
        elif state is State.SCALING:
            self._low, self._high = -_INF, _INF
            if self._profiler.probing is not None:
                self._check_at_step = self._profiler.ends_at_step
            else:
                self._check_at_step = n + 1
        else:
            self._low, self._high = -_INF, _INF
            self._check_at_step = _NEVER if state is State.DONE else n + 1

    def _band_now(self) -> float:
        """θ (g/kWh) now, computed as an observation would, without building one."""
        now = self._clock()
        ci = self._refresher.current_intensity_g_per_kwh
        return self._band(self._outlooks(now), ci, self._remaining_work_s()).suspend_at

    # -- deciding --------------------------------------------------------------------------------
    def _loop(self, now: float) -> None:
        """Decide and act until the state settles (Suspend/Migration/Pause resolve in here)."""
        for _ in range(10_000):
            obs = self._observe(now)
            step = self.policy.decide(self._ctx, obs)
            self._apply(step, obs)
            self._record_plan(now)
            if not step.changed and not step.actions:
                return
            now = self._clock()
        log.error("controller did not settle after 10000 transitions; state %s", self._ctx.state)

    def _observe(self, now: float, *, finished: bool = False) -> Observation:
        return observe(
            self._view,
            self._ctx.site,
            now,
            threshold=self.threshold,
            rules=self.policy.rules,
            remaining_work_s=self._remaining_work_s(),
            power_w=self.power_w,
            idle_power_w=self.idle_power_w,
            optimizer_settled=self._profiler.settled,
            best_setting=self._profiler.best_setting,
            drift=self._drift,
            checkpoint_ok=self._checkpoint_ok,
            finished=finished,
            gpu_curve=self._gpu_curve(),
            pace_known=self._step_time_s is not None,
        )

    def _gpu_curve(self) -> GpuCurve | None:
        """The GPU's speed and power per setting from the optimiser's fitted model, once it has
        settled (None before, or without an optimiser: the planner then plans at one power)."""
        optimizer = self.optimizer
        if optimizer is None or not self._profiler.settled:
            return None
        key = getattr(optimizer, "probes_used", None)
        if self._curve is not None and self._curve[0] == key:
            return self._curve[1]
        curve = None
        settings = getattr(optimizer, "settings", None)
        predict = getattr(optimizer, "predict", None)
        if settings is not None and predict is not None:
            try:
                points = [predict(float(s)) for s in sorted(settings, reverse=True)]
                t0 = points[0][0]
                curve = GpuCurve(
                    tuple(float(s) for s in sorted(settings, reverse=True)),
                    tuple(t0 / t for t, _ in points),
                    tuple(p for _, p in points),
                    self.idle_power_w,
                )
            except (ConfigError, ZeroDivisionError, ValueError):
                curve = None
        self._curve = (key, curve)
        return curve

    def _outlooks(self, now: float) -> tuple[SiteOutlook, ...]:
        """Every site's latest reading and its forecast from ``now`` on."""
        return outlooks(self._view, now)

    def _band(
        self,
        outlooks: tuple[SiteOutlook, ...],
        intensity_g_per_kwh: float,
        remaining_work_s: float | None,
    ) -> Band:
        """The θ band for these outlooks (the current site's falls back to its bare reading)."""
        return band(
            self._view,
            self._ctx.site,
            outlooks,
            intensity_g_per_kwh,
            remaining_work_s,
            threshold=self.threshold,
            rules=self.policy.rules,
            power_w=self.power_w,
            idle_power_w=self.idle_power_w,
        )

    def _remaining_work_s(self) -> float | None:
        return remaining_work_s(self.total_steps, self._steps, self._step_time_s)

    def _apply(self, step: Step, obs: Observation) -> None:
        before = self._ctx
        self._ctx = step.state
        if step.changed:
            if before.state is State.TOLERANCE and step.state.state is not State.TOLERANCE:
                self._end_window(obs.now_s)
            if step.state.state is State.SUSPEND:
                self._checkpoint_ok = None
            if step.state.state is State.TOLERANCE:
                self._drift = False
            self._record(before.state, step.state.state, step.reason, obs.now_s, before.site)
        self._run_actions(step.actions, obs.now_s)
        if (
            step.changed
            and self._ctx.state is State.TOLERANCE
            and self._windows.open_since_step is None
        ):
            self._open_window(obs.now_s)

    def _record(
        self, from_state: State, to_state: State, reason: str, now: float, site: str | None = None
    ) -> None:
        event = Event(
            time=utc_from_s(now),
            from_state=from_state,
            to_state=to_state,
            reason=reason,
            intensity_g_per_kwh=self._refresher.current_intensity_g_per_kwh,
            site=site or self._ctx.site,
            gpu_setting=self._ctx.setting,
        )
        self.events.append(event)
        log.info("%s → %s at %s: %s", from_state, to_state, event.site, reason)
        self._windows.write("event", lambda ledger, run_id: ledger.record_event(run_id, event))
        if self.hooks.on_event is not None:
            self.hooks.on_event(event)

    def _record_plan(self, now: float) -> None:
        """Store the planner's plan in the ledger whenever it makes a new one."""
        current = self.policy.current_plan()
        if current is None or current is self._plan_recorded:
            return
        self._plan_recorded = current
        from caftm.control.planner import plan_record

        unit = "W" if self.knob is KnobKind.POWER else "MHz"
        record = plan_record(current, deadline_s=self.policy.rules.deadline_s, unit=unit)
        self._windows.write(
            "plan", lambda ledger, run_id: ledger.record_plan(run_id, utc_from_s(now), record)
        )

    # -- actions ---------------------------------------------------------------------------------
    def _run_actions(self, actions: tuple[object, ...], now: float) -> None:
        dispatch(actions, _ControllerActions(self), now)

    def _apply_setting(self, setting: float | None) -> None:
        if self.hooks.apply_setting is not None:
            self.hooks.apply_setting(setting)

    def _take_checkpoint(self) -> bool:
        if self.hooks.checkpoint is None:
            return True
        try:
            self.hooks.checkpoint()
        except Exception as e:  # any failure: do not move without a checkpoint
            log.warning("checkpoint failed, training carries on here: %s", e)
            return False
        return True

    def _migrate(self, dest: str) -> None:
        if self.hooks.migrate is not None:
            self.hooks.migrate(dest)
        self._refresher.site = dest

    def _pause(self, until_s: float) -> None:
        if self.hooks.pause is not None:
            self.hooks.pause(until_s)
        else:
            time.sleep(max(0.0, until_s - self._clock()))
        if not self._refresher.running:
            self._refresher.refresh_once()

    # -- profiling and windows -------------------------------------------------------------------
    def _start_profiling(self, intensity_g_per_kwh: float, now: float) -> None:
        self._drift = False
        if (
            self.optimizer is not None
            and self.weights is not None
            and 0.0 <= intensity_g_per_kwh <= MAX_INTENSITY_G_PER_KWH
        ):
            self.weights = replace(self.weights, intensity_g_per_kwh=intensity_g_per_kwh)
            self.optimizer.set_weights(self.weights)
        self._profiler.restart(self._steps, now)

    def _advance_probe(self, now: float) -> None:
        self._profiler.advance(self._steps, now)
        if self._profiler.settled:
            self._loop(now)

    def _use_probe(self, m: Measurement, now: float) -> None:
        """Learn speed and power from a finished probe window and record it."""
        if m.time_s > 0:
            # the pace on the controller's clock, as for Tolerance windows: the planner's default
            # deadline is fixed from this first estimate (an accelerated job clock included)
            clock_s = self._profiler.last_clock_s
            self._step_time_s = clock_s / m.steps if clock_s > 0 else m.step_time_s
            self.power_w = m.avg_power_w
        ci = self._refresher.current_intensity_g_per_kwh
        self._windows.record(
            now, m.time_s, m.steps, m.setting, m.energy_j, ci, "scaling", self.site
        )

    def _open_window(self, now: float) -> None:
        self._windows.begin(self._steps, now, self._refresher.current_intensity_g_per_kwh)

    def _end_window(self, now: float) -> None:
        ci = self._refresher.current_intensity_g_per_kwh
        closed = self._windows.end(self._steps, now, ci, self._ctx.setting, self._ctx.site)
        self._use_window(closed)

    def _use_window(self, closed: ClosedWindow | None) -> None:
        """Learn speed and power from a finished Tolerance window; check drift when due."""
        if closed is None or closed.time_s <= 0:
            return
        # the pace on the controller's clock: what the rest of the job takes on the timeline
        # its deadline and plans live on (an accelerated job clock included)
        paced_s = closed.clock_s if closed.clock_s > 0 else closed.time_s
        self._step_time_s = paced_s / closed.steps
        if closed.energy_j is None:
            return
        self.power_w = closed.energy_j / closed.time_s
        self._windows_seen += 1
        due = self._windows_seen % self.drift_every_windows == 0
        setting = closed.setting
        if (
            self.optimizer is not None
            and due
            and setting is not None
            and setting == self._ctx.setting
        ):
            m = Measurement(self.knob, setting, closed.steps, closed.time_s, closed.energy_j)
            self._drift = self._profiler.settled and self.optimizer.check_drift(m)

    # -- persistence -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        """JSON-able state for a checkpoint (with the deadline in force: a default one set by
        the planner stays the same on every leg)."""
        return {
            "control": self._ctx.to_dict(),
            "steps": self._steps,
            "deadline_s": self.policy.rules.deadline_s,
        }

    def load_state_dict(self, data: dict[str, object]) -> None:
        """Restore from :meth:`state_dict` (before :meth:`start`): the step count and decision
        state; the run restarts in Scaling at the refresher's current site."""
        control = data.get("control")
        if isinstance(control, dict):
            restored = ControlState.from_dict(control)
            self._ctx = replace(restored, state=State.SCALING, site=self._refresher.site)
        steps = data.get("steps")
        if isinstance(steps, int):
            self._steps = steps
        deadline = data.get("deadline_s")
        if isinstance(deadline, int | float) and self.policy.rules.deadline_s is None:
            self.policy.rules = replace(self.policy.rules, deadline_s=float(deadline))


class _ControllerActions:
    """The controller's :class:`~caftm.control.dispatch.ActionHandler`: actions run on its hooks."""

    def __init__(self, controller: Controller) -> None:
        self._c = controller

    def apply_setting(self, setting: float | None) -> None:
        self._c._apply_setting(setting)

    def start_profiling(self, intensity_g_per_kwh: float, now_s: float) -> None:
        self._c._start_profiling(intensity_g_per_kwh, now_s)

    def checkpoint(self) -> None:
        self._c._checkpoint_ok = self._c._take_checkpoint()

    def preempt(self) -> None:
        checkpoint = self._c.hooks.checkpoint
        if checkpoint is not None:
            checkpoint()  # no try: a stop without its checkpoint must not pass for a clean one

    def migrate(self, dest: str) -> None:
        self._c._migrate(dest)

    def pause(self, until_s: float) -> None:
        self._c._pause(until_s)

    def resume(self) -> None:
        if self._c.hooks.resume is not None:
            self._c.hooks.resume()

    def finish(self) -> None:
        """Nothing to do: the transition's ApplySetting(None) restores the GPU."""
