"""Replay one job through a policy: the same decision path as a live run, in virtual time.

The loop mirrors :meth:`caftm.control.controller.Controller._loop`: build the observation with
:func:`caftm.control.observe.observe` over a :class:`~caftm.sim.site_traces.TraceView`, ask
``policy.decide`` (the pure transition), run the returned actions with
:func:`caftm.control.dispatch.dispatch` on :class:`SimRun` (the simulator's action handler), and
decide again until the state settles; then train (or wait) to the next decision time — the next
step of the trace's grid, as a live refresher would poll — and repeat.

What the actions cost here (and in the offline optimum, :mod:`caftm.sim.optimum`):

* training: the GPU profile's power at the applied setting, per device, at the site's intensity;
  progress at the profile's speed for that setting;
* a move (:class:`~caftm.control.states.Migrate`): the move's downtime (checkpoint + transfer +
  restart) at idle power on the site it leaves; the checkpoint itself is part of that downtime;
* a pause: idle power on the site, for as long as it lasts;
* Scaling: settles at once on the setting the optimiser would choose (profiling not charged).

Units: s, W, J, gCO2eq/kWh, g.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

from caftm._units import J_PER_KWH
from caftm.control.dispatch import dispatch
from caftm.control.observe import observe
from caftm.control.policies import Policy
from caftm.control.states import ControlState, utc_from_s
from caftm.control.threshold import ThresholdMode, ThresholdSpec
from caftm.errors import ConfigError
from caftm.records import State
from caftm.sim.gpu_profile import GpuProfile
from caftm.sim.job import SimJob
from caftm.sim.site_traces import ForecastMode, SiteTraces, TraceView

log = logging.getLogger(__name__)

#: Most decisions one job may take (a policy that never settles is a bug, not a result).
MAX_DECISIONS = 200_000


@dataclass(frozen=True, slots=True)
class SimEvent:
    """One transition taken in the simulation (time POSIX s; site before the transition)."""

    time_s: float
    from_state: State
    to_state: State
    site: str
    reason: str
    intensity_g_per_kwh: float


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of the job: ``kind`` is ``train``, ``pause`` or ``move`` (times POSIX s)."""

    start_s: float
    end_s: float
    site: str
    kind: str
    setting: float | None
    carbon_g: float


@dataclass
class JobResult:
    """Outcome of one simulated job.

    Attributes:
        finished: the work completed before the trace ended.
        finish_s: when it completed (or where the simulation stopped), POSIX s.
    """

    policy: str
    job: SimJob
    carbon_g: float = 0.0
    energy_j: float = 0.0
    finish_s: float = math.nan
    finished: bool = False
    moves: int = 0
    pauses: int = 0
    #: plans the policy solved for this job (a planning policy; 0 for the others)
    solves: int = 0
    events: list[SimEvent] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)

    @property
    def jct_s(self) -> float:
        """Completion time from the job's start, s."""
        return self.finish_s - self.job.start_s


class SimRun:
    """The simulator's :class:`~caftm.control.dispatch.ActionHandler`: virtual clock, GPU model,
    energy and carbon accounting of one job."""

    def __init__(
        self,
        job: SimJob,
        traces: SiteTraces,
        gpu: GpuProfile,
        view: TraceView,
        result: JobResult,
        *,
        downtime_s: float,
        tune_gpu: bool,
        record: bool,
    ) -> None:
        self.job, self.traces, self.gpu, self.view, self.result = job, traces, gpu, view, result
        self.downtime_s = downtime_s
        self.tune_gpu = tune_gpu
        self.record = record
        self.now_s = job.start_s
        self.work_s = job.work_s
        self.done_s = 0.0  # seconds of full-clock work done
        self.setting: float | None = None
        self._factor = gpu.time_factor(None)
        self._power_w = gpu.power_at(None) * job.gpus
        self.settled = False
        self.best: float | None = None
        self.checkpoint_ok: bool | None = None
        self.idle_power_w = gpu.idle_power_w * job.gpus
        # without tuning the GPU (as a controller without an optimiser) only the default is known
        self.curve = (gpu if tune_gpu else gpu.default_only()).curve(job.gpus)

    # -- what the observation needs ----------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.done_s >= self.work_s

    def power_w(self) -> float:
        """Training power of the whole job at the applied setting, W."""
        return self._power_w

    def remaining_work_s(self) -> float:
        """Wall time left at the applied setting, s."""
        return max(0.0, self.work_s - self.done_s) * self._factor

    # -- time and carbon ---------------------------------------------------------------------------
    def _spend(self, end_s: float, power_w: float, kind: str) -> None:
        """Draw ``power_w`` at the current site from now to ``end_s``; advance the clock."""
        start_s = self.now_s
        if end_s <= start_s:
            return
        traces, view = self.traces, self.view
        row = traces.index[view.site]
        col = view.column
        if end_s <= traces.start_s + (col + 1) * traces.step_s:  # within one grid step
            carbon = power_w * (end_s - start_s) / J_PER_KWH * float(traces.values[row, col])
        else:
            carbon = self._carbon_across_steps(row, start_s, end_s, power_w)
        self.result.carbon_g += carbon
        self.result.energy_j += power_w * (end_s - start_s)
        if self.record:
            setting = self.setting if kind == "train" else None
            self.result.segments.append(Segment(start_s, end_s, view.site, kind, setting, carbon))
        self.now_s = view.now_s = end_s

    def _carbon_across_steps(self, row: int, start_s: float, end_s: float, power_w: float) -> float:
        """Carbon (g) of ``power_w`` at site ``row`` over ``[start_s, end_s)``, step by step."""
        traces = self.traces
        carbon = 0.0
        t = start_s
        while t < end_s:
            col = traces.column(t)
            edge = min(end_s, traces.start_s + (col + 1) * traces.step_s)
            if edge <= t:  # past the grid's end: hold the last value
                edge = end_s
            carbon += power_w * (edge - t) / J_PER_KWH * float(traces.values[row, col])
            t = edge
        return carbon

    def train_until(self, end_s: float) -> None:
        """Train at the applied setting until ``end_s`` or until the work is done."""
        factor = self._factor
        finish_s = self.now_s + (self.work_s - self.done_s) * factor
        stop_s = min(end_s, finish_s)
        progress = (stop_s - self.now_s) / factor
        self._spend(stop_s, self._power_w, "train")
        self.done_s = self.work_s if stop_s >= finish_s else self.done_s + progress

    # -- ActionHandler -------------------------------------------------------------------------
    def apply_setting(self, setting: float | None) -> None:
        self.setting = setting
        self._factor = self.gpu.time_factor(setting)
        self._power_w = self.gpu.power_at(setting) * self.job.gpus

    def start_profiling(self, intensity_g_per_kwh: float, now_s: float) -> None:
        self.settled = True
        self.best = self.gpu.best_setting(intensity_g_per_kwh) if self.tune_gpu else None

    def checkpoint(self) -> None:
        self.checkpoint_ok = True

    def preempt(self) -> None:
        """Nothing to do: a simulated job is never told to stop (no observation says so)."""

    def migrate(self, dest: str) -> None:
        self._spend(self.now_s + self.downtime_s, self.idle_power_w, "move")
        self.view.site = dest
        self.result.moves += 1

    def pause(self, until_s: float) -> None:
        self._spend(until_s, self.idle_power_w, "pause")

    def resume(self) -> None:
        """Nothing to do: training carries on at the next decision."""

    def finish(self) -> None:
        """Nothing to do: the result is complete."""


def simulate_job(
    policy: Policy,
    job: SimJob,
    traces: SiteTraces,
    gpu: GpuProfile,
    *,
    threshold: ThresholdSpec,
    forecast: ForecastMode = "none",
    tune_gpu: bool = True,
    record: bool = False,
    name: str | None = None,
) -> JobResult:
    """Replay ``job`` under ``policy`` (whose rules carry the deadline and move cost).

    Args:
        threshold: how θ is computed (as the live controller's ``threshold``).
        forecast: what the policy knows of the future (see :mod:`caftm.sim.site_traces`).
        tune_gpu: Scaling picks the cheapest setting (False: the device default, as a controller
            without an optimiser).
        record: keep the segments (for plots); events are always kept.
        name: the policy's label in the result (default ``policy.name``).
    """
    if job.start_site not in traces.index:
        raise ConfigError(f"job start site {job.start_site!r} is not among {traces.sites}")
    if not traces.start_s <= job.start_s < traces.end_s:
        raise ConfigError(
            f"job start {utc_from_s(job.start_s).isoformat()} is outside the trace "
            f"[{utc_from_s(traces.start_s).isoformat()}, {utc_from_s(traces.end_s).isoformat()})"
        )
    result = JobResult(name or policy.name, job)
    keep_history = threshold.mode is ThresholdMode.RELATIVE  # only a relative θ reads history
    view = TraceView(traces, job.start_site, forecast, keep_history=keep_history)
    view.now_s = job.start_s
    view.arrived_s = job.start_s
    run = SimRun(
        job,
        traces,
        gpu,
        view,
        result,
        downtime_s=policy.rules.move_cost.downtime_s,
        tune_gpu=tune_gpu,
        record=record,
    )
    ctx = ControlState(State.SCALING, job.start_site, job.start_s)
    run.start_profiling(view.current_intensity_g_per_kwh, job.start_s)  # as Controller.start
    tick_s, grid_start_s = traces.step_s, traces.start_s
    rules = policy.rules
    for _ in range(MAX_DECISIONS):
        now_s = run.now_s
        obs = observe(
            view,
            ctx.site,
            now_s,
            threshold=threshold,
            rules=rules,
            remaining_work_s=max(0.0, run.work_s - run.done_s) * run._factor,
            power_w=run._power_w,
            idle_power_w=run.idle_power_w,
            optimizer_settled=run.settled,
            best_setting=run.best,
            checkpoint_ok=run.checkpoint_ok,
            finished=run.done_s >= run.work_s,
            gpu_curve=run.curve,
        )
        step = policy.decide(ctx, obs)
        if step.changed:
            new_state = step.state.state
            ci = obs.intensity_g_per_kwh
            result.events.append(SimEvent(now_s, ctx.state, new_state, ctx.site, step.reason, ci))
            if new_state is State.SUSPEND:
                run.checkpoint_ok = None
            if new_state is State.PAUSED and ctx.state is not State.PAUSED:
                result.pauses += 1
        ctx = step.state
        if step.actions:
            dispatch(step.actions, run, now_s)
        if ctx.state is State.DONE:
            result.finished = run.finished
            result.finish_s = run.now_s
            result.solves = policy.solves
            return result
        if step.changed or step.actions:
            continue
        next_s = grid_start_s + (math.floor((now_s - grid_start_s) / tick_s) + 1) * tick_s
        next_s = min(next_s, policy.next_decision_s(now_s))  # a planned stop within the step
        if next_s > traces.end_s:  # the trace ends before the job does
            result.finish_s = run.now_s
            result.solves = policy.solves
            return result
        run.train_until(next_s)
    raise RuntimeError(f"policy {policy.name} did not settle in {MAX_DECISIONS} decisions")
