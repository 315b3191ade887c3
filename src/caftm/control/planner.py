"""The deadline-aware planner: the shipped default policy.

At each decision it solves, over the forecast up to the job's deadline, the problem the offline
optimum solves (:mod:`caftm.control.planning`: which site, run or wait, how much work per hour →
which GPU setting; moves cost their downtime at idle power; the deadline is hard), from the job's
current site, progress and time, and carries out the plan's first step through the usual
transition and actions (Suspend → Migration → move or pause; ``ApplySetting`` for the clock). It
re-plans when the hour (hence the forecast), the site or the progress changes (receding horizon;
``replan_every_h`` > 1 re-plans on a new forecast only that often while the job follows its plan).

* **Deadline.** ``rules.deadline_s``; without one, a default of :data:`DEFAULT_DEADLINE_FACTOR`
  (1.1) × the job's expected length at full clock from its first decision. A job of unknown
  length (no ``total_steps``) is planned over a sliding window of ``rules.horizon_s`` of work.
  Inside the deadline time costs nothing: only carbon is minimised, so every choice is unchanged
  when all intensities are scaled by one factor (no absolute g/kWh anywhere).
* **Forecasts.** Each site's hourly forecast (:class:`~caftm.control.states.SiteOutlook`); past its
  end the forecast's last day repeats; without one the current intensity holds (flat).
* **Robust to forecast error.** Progress is real, only the intensities are forecast, so a re-plan
  from where the job is always fits the deadline; and when the slack left is no more than one
  move's downtime the planner runs at full clock where it is, whatever the forecast says.
* **GPU.** The plan's work per slot picks the slowest setting on the GPU's energy hull that does
  it (``obs.gpu_curve``: the simulator's GPU profile, or the live optimiser's fitted model); with
  no curve known it plans moves and waits at the current power.

Units: s, W, gCO2eq/kWh, g.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np
import numpy.typing as npt

from caftm.control.migration import HOUR_S, Plan, PlanKind
from caftm.control.planning import GpuCurve, PlanningProblem, PlanStep
from caftm.control.policies import Policy, Rules
from caftm.control.states import (
    ApplySetting,
    Checkpoint,
    ControlState,
    Observation,
    Pause,
    Resume,
    SiteOutlook,
    StartProfiling,
    Step,
    utc_from_s,
)
from caftm.control.transition import _to, transition
from caftm.errors import ConfigError
from caftm.records import State

#: Without a user deadline: this multiple of the job's expected full-clock length.
DEFAULT_DEADLINE_FACTOR = 1.1
#: Plan slots, s (the forecasts' step).
SLOT_S = HOUR_S
#: Progress units per slot (5 min of full-clock work: see caftm.sim.optimum.UNITS_PER_SLOT).
UNITS_PER_SLOT = 12
#: Slots of the plan read and kept (the first is carried out; the rest are shown).
PLAN_STEPS_KEPT = 12


@dataclass(frozen=True, slots=True)
class Intent:
    """What the plan asks for now, and the plan it comes from (times POSIX s)."""

    kind: Literal["run", "wait", "move"]
    site: str
    setting: float | None
    until_s: float
    reason: str
    steps: tuple[PlannedSlot, ...] = ()
    #: when this intent hands over to ``then`` (the second phase of the slot; inf: none)
    stop_s: float = math.inf
    then: Intent | None = None


@dataclass(frozen=True, slots=True)
class PlannedSlot:
    """One slot of the current plan, as the ledger and ``caftm status`` show it."""

    start_s: float
    end_s: float
    site: str
    action: Literal["run", "wait", "move"]
    setting: float | None
    work_s: float

    def to_dict(self) -> dict[str, object]:
        """JSON-able form."""
        return {
            "start_s": self.start_s,
            "end_s": self.end_s,
            "site": self.site,
            "action": self.action,
            "setting": self.setting,
            "work_s": self.work_s,
        }


def hourly_intensities(outlook: SiteOutlook, slots: int) -> npt.NDArray[np.float64]:
    """Intensity per plan slot from the current hour on: now, then the forecast (its last day
    repeating past its end); without a forecast the current value."""
    out = np.full(slots, float(outlook.intensity_g_per_kwh))
    forecast = np.asarray(outlook.forecast_g_per_kwh, dtype=np.float64)
    if forecast.size == 0 or slots <= 1:
        return out
    known = min(slots, forecast.size)
    out[1:known] = forecast[1:known]
    if slots > forecast.size:
        day = forecast[-24:]
        out[forecast.size :] = day[np.arange(slots - forecast.size) % day.size]
    return out


class Planner(Policy):
    """Plans site, waits and GPU setting to the deadline over forecasts; re-plans each hour.

    Args:
        rules: as every policy; ``deadline_s`` None gets the default deadline (see module doc).
        units_per_slot: progress resolution of the plan (per hour of full-clock work).
        default_deadline_factor: the default deadline's multiple of the expected length.
        replan_every_h: re-plan on a new forecast only this often while the job follows its
            plan (1, the default: every hour; more: fewer solves, older forecasts); a job off
            its plan (another site or progress) is re-planned at once.
    """

    name: ClassVar[str] = "planner"
    uses_forecast: ClassVar[bool] = True

    def __init__(
        self,
        rules: Rules | None = None,
        *,
        units_per_slot: int = UNITS_PER_SLOT,
        default_deadline_factor: float = DEFAULT_DEADLINE_FACTOR,
        replan_every_h: int = 1,
    ) -> None:
        super().__init__(rules)
        if replan_every_h < 1:
            raise ConfigError(f"replan_every_h must be a whole number ≥ 1, got {replan_every_h}")
        self.units_per_slot = units_per_slot
        self.default_deadline_factor = default_deadline_factor
        self.replan_every_h = replan_every_h
        #: the last plan solved: (when, its steps, the sites, the units it started from)
        self._solved: tuple[float, tuple[PlanStep, ...], list[str], int] | None = None
        self._cache: tuple[tuple[object, ...], Intent] | None = None
        self._problems: dict[tuple[object, ...], PlanningProblem] = {}
        #: the last plan made (for the ledger and ``caftm status``)
        self.current: Intent | None = None
        #: plans solved so far (each a solve of the DP)
        self.solves = 0
        self._checked = False
        self._spans_memo: tuple[float, float, list[float]] = (math.nan, math.nan, [])
        self._ci_memo: tuple[object, str, list[str], npt.NDArray[np.float64]] | None = None

    # -- the transition, with the plan's first step ----------------------------------------------
    def decide(self, ctx: ControlState, obs: Observation) -> Step:
        if obs.preempted or ctx.state in (State.DONE, State.SUSPEND) or obs.finished:
            return transition(ctx, obs, self)
        if ctx.state is State.SCALING:
            if not obs.optimizer_settled:
                return Step(ctx)  # live: the optimiser is still measuring the GPU
            intent = self.intent(ctx, obs)
            setting = intent.setting if intent.kind == "run" else ctx.setting
            return _to(
                ctx,
                obs,
                State.TOLERANCE,
                _setting_reason(setting),
                ApplySetting(setting),
                setting=setting,
                scaling_intensity_g_per_kwh=obs.intensity_g_per_kwh,
            )
        if ctx.state is State.TOLERANCE:
            intent = self.intent(ctx, obs)
            if intent.kind != "run":
                return _to(ctx, obs, State.SUSPEND, intent.reason, Checkpoint())
            if intent.setting != ctx.setting:
                return Step(replace(ctx, setting=intent.setting), (ApplySetting(intent.setting),))
            return Step(ctx)
        if ctx.state is State.PAUSED:
            intent = self.intent(ctx, obs)
            if intent.kind == "wait":
                wake = min(intent.until_s, obs.now_s + self.rules.pause_recheck_s)
                return Step(replace(ctx, pause_until_s=intent.until_s), (Pause(wake),))
            ci = obs.intensity_g_per_kwh
            return _to(
                ctx,
                obs,
                State.SCALING,
                intent.reason,
                Resume(),
                StartProfiling(ci),
                scaling_intensity_g_per_kwh=ci,
            )
        return transition(ctx, obs, self)

    def next_decision_s(self, now_s: float) -> float:
        """When the plan's work for this slot is done (inf: at the slot's end)."""
        current = self._cache[1] if self._cache is not None else None
        if current is None or current.kind != "run" or current.stop_s <= now_s:
            return math.inf
        return current.stop_s

    def suspend_reason(self, ctx: ControlState, obs: Observation) -> str | None:
        intent = self.intent(ctx, obs)
        return None if intent.kind == "run" else intent.reason

    def plan(self, ctx: ControlState, obs: Observation) -> Plan:
        intent = self.intent(ctx, obs)
        if intent.kind == "move":
            return Plan(PlanKind.MOVE, intent.reason, dest=intent.site)
        if intent.kind == "wait":
            return Plan(PlanKind.PAUSE, intent.reason, until_s=intent.until_s)
        return Plan(PlanKind.STAY, intent.reason)

    def is_clean(self, ctx: ControlState, obs: Observation) -> bool:
        return self.intent(ctx, obs).kind != "wait"

    # -- planning ----------------------------------------------------------------------------------
    def current_plan(self) -> Intent | None:
        """The last plan made (for the ledger and ``caftm status``)."""
        return self.current

    def deadline_s(self, obs: Observation, full_work_s: float) -> float:
        """The deadline in force (setting the default one on the first call without one)."""
        if self.rules.deadline_s is None:
            default = obs.now_s + self.default_deadline_factor * full_work_s
            self.rules = replace(self.rules, deadline_s=default)
        assert self.rules.deadline_s is not None
        return self.rules.deadline_s

    def intent(self, ctx: ControlState, obs: Observation) -> Intent:
        """The plan's first step from here (memoised while hour, site, progress and forecast
        stay the same). Before the run's pace is measured it runs here: a short job must not
        wait on the guess that it is long."""
        if not obs.pace_known:
            return Intent("run", ctx.site, None, obs.now_s, "no pace measured yet: running here")
        curve = obs.gpu_curve or GpuCurve.flat(obs.power_w, obs.idle_power_w)
        full_work_s, deadline = self._work_and_deadline(ctx, obs, curve)
        full_clock = Intent("run", ctx.site, None, deadline, "")
        if self._reserve_reached(obs, full_work_s, deadline, curve):
            return replace(full_clock, reason="deadline reserve reached: full clock here")
        units = math.ceil(full_work_s / self._unit_s - 1e-6)
        sites, ci, spans = self._intensities(ctx, obs, deadline)
        hour, deadline_hour = math.floor(obs.now_s / SLOT_S), math.floor(deadline / SLOT_S)
        key = (ctx.site, units, hour, deadline_hour, ci.tobytes(), curve)
        cached = self._cached(key, obs.now_s) or self._followed(ctx.site, units, obs.now_s, curve)
        if cached is not None:
            if cached is not self._cache_intent():
                self._cache = (key, cached)
                self.current = cached
            return cached
        intent = self._solve(ctx.site, units, sites, ci, spans, curve, obs.now_s)
        if intent is None:
            return replace(full_clock, reason="behind the plan: full clock here")
        if not intent.steps:
            return replace(full_clock, reason="no plan fits the deadline: full clock here")
        self._cache = (key, intent)
        self.current = intent
        return intent

    @property
    def _unit_s(self) -> float:
        """One progress unit of the plan, s of full-clock work."""
        return SLOT_S / self.units_per_slot

    def _work_and_deadline(
        self, ctx: ControlState, obs: Observation, curve: GpuCurve
    ) -> tuple[float, float]:
        """Full-clock work left (s) and the deadline (POSIX s); a job of unknown length plans a
        window of ``rules.horizon_s`` of work with the default deadline factor, sliding with the
        job (moves and clock; short waits only). A deadline the job cannot meet is said once."""
        if obs.remaining_work_s is None:
            full_work_s = self.rules.horizon_s
            return full_work_s, obs.now_s + self.default_deadline_factor * full_work_s
        full_work_s = obs.remaining_work_s * curve.speed[_row_of(curve, ctx.setting)]
        deadline = self.deadline_s(obs, full_work_s)
        if not self._checked:
            self._checked = True
            _check_deadline(obs.now_s, full_work_s, full_work_s / max(curve.speed), deadline)
        return full_work_s, deadline

    def _reserve_reached(
        self, obs: Observation, full_work_s: float, deadline_s: float, curve: GpuCurve
    ) -> bool:
        """Whether the slack left is no more than one move's downtime (then: full clock here)."""
        downtime = self.rules.move_cost.downtime_s
        return obs.now_s + full_work_s / max(curve.speed) + downtime >= deadline_s

    def _intensities(
        self, ctx: ControlState, obs: Observation, deadline_s: float
    ) -> tuple[list[str], npt.NDArray[np.float64], list[float]]:
        """The sites planned over (the current one first when it has no outlook), the intensity
        per slot and site ``(slots, sites)`` and the slots' lengths (memoised per outlooks)."""
        if self._spans_memo[:2] != (obs.now_s, deadline_s):
            self._spans_memo = (obs.now_s, deadline_s, _spans(obs.now_s, deadline_s))
        spans = self._spans_memo[2]
        memo = self._ci_memo
        if memo is not None and memo[0] is obs.outlooks and memo[1] == ctx.site:
            sites, ci = memo[2], memo[3]
            if ci.shape[0] >= len(spans):
                return sites, ci[: len(spans)], spans
        outlooks = [o for o in obs.outlooks if math.isfinite(o.intensity_g_per_kwh)]
        if not any(o.site == ctx.site for o in outlooks):
            outlooks.insert(0, SiteOutlook(ctx.site, obs.intensity_g_per_kwh))
        sites = [o.site for o in outlooks]
        ci = np.stack([hourly_intensities(o, len(spans)) for o in outlooks], axis=1)
        self._ci_memo = (obs.outlooks, ctx.site, sites, ci)
        return sites, ci, spans

    def _cached(self, key: tuple[object, ...], now_s: float) -> Intent | None:
        """The memoised intent for ``key``; or, later in the same slot once the plan's first
        phase is done, its second phase."""
        if self._cache is None:
            return None
        cached_key, cached = self._cache
        if cached_key == key:
            return cached
        same_slot = cached_key[:1] + cached_key[2:] == key[:1] + key[2:]
        if same_slot and cached.then is not None and now_s >= cached.stop_s - 1e-6:
            then = replace(cached.then, steps=cached.steps)
            self._cache = (key, then)
            return then
        return None

    def _cache_intent(self) -> Intent | None:
        return self._cache[1] if self._cache is not None else None

    def _followed(self, site: str, units: int, now_s: float, curve: GpuCurve) -> Intent | None:
        """The last plan's step for this hour, while it is younger than ``replan_every_h`` and
        the job is where it planned to be (site and progress) at an hour it planned."""
        if self.replan_every_h <= 1 or self._solved is None:
            return None
        solved_s, plan, sites, solved_units = self._solved
        done = 0
        for i, step in enumerate(plan[: self.replan_every_h]):
            if i and abs(solved_s + step.start_s - now_s) < 1e-6:
                if sites[plan[i - 1].site] != site or solved_units - done != units:
                    return None
                slots = tuple(_planned(p, solved_s, sites, curve, self._unit_s) for p in plan)
                return replace(_first(step, slots[i:], site, sites, curve), steps=slots[i:])
            done += step.units
        return None

    def _solve(
        self,
        site: str,
        units: int,
        sites: list[str],
        ci: npt.NDArray[np.float64],
        spans: list[float],
        curve: GpuCurve,
        now_s: float,
    ) -> Intent | None:
        """Solve the plan from ``site`` with ``units`` to do (None: more than the slots hold;
        an intent without steps: no plan fits)."""
        problem = self._problem(curve, spans, self.rules.move_cost.downtime_s)
        if units > problem.capacity_units():
            return None
        start = sites.index(site)
        result = problem.solve(ci[None], start, units, plans=True, max_steps=PLAN_STEPS_KEPT)
        self.solves += 1
        plan = result.plans[0] if result.plans else ()
        if not plan:
            return Intent("run", site, None, now_s, "")
        self._solved = (now_s, plan, sites, units)
        slots = tuple(_planned(step, now_s, sites, curve, self._unit_s) for step in plan)
        return replace(_first(plan[0], slots, site, sites, curve), steps=slots)

    def _problem(self, curve: GpuCurve, spans: list[float], downtime: float) -> PlanningProblem:
        """The problem for these slots (the tables memoised per curve)."""
        key = (curve, downtime)
        found = self._problems.get(key)
        if found is None:
            found = PlanningProblem(curve, spans, unit_s=self._unit_s, move_downtime_s=downtime)
            self._problems = {key: found}
        found.spans_s = [max(0.0, s) for s in spans]
        return found


def _check_deadline(now_s: float, work_s: float, fastest_s: float, deadline_s: float) -> None:
    """Bad input: a deadline before the job can finish even at full clock.

    Raises:
        ConfigError: it is.
    """
    if now_s + fastest_s > deadline_s + 1e-6:
        raise ConfigError(
            f"deadline {utc_from_s(deadline_s).isoformat()} is before the job can finish "
            f"even at full clock ({(work_s / HOUR_S):.1f} h of work left at "
            f"{utc_from_s(now_s).isoformat()}); give a later policy.deadline"
        )


def _row_of(curve: GpuCurve, setting: float | None) -> int:
    if setting is None:
        return 0
    return int(np.argmin(np.abs(np.array(curve.settings) - setting)))


def _setting_of(curve: GpuCurve, row: int | None) -> float | None:
    """The setting to apply for a hull row (the first row is the device default: None)."""
    return None if row is None or row == 0 else curve.settings[row]


def _spans(now_s: float, deadline_s: float) -> list[float]:
    """Slot lengths from now to the deadline, cut at whole hours (UTC)."""
    spans = []
    t = now_s
    while t < deadline_s - 1e-6:
        edge = min(deadline_s, (math.floor(t / SLOT_S + 1e-9) + 1) * SLOT_S)
        spans.append(edge - t)
        t = edge
    return spans or [0.0]


def _planned(
    step: PlanStep, now_s: float, sites: list[str], curve: GpuCurve, unit_s: float
) -> PlannedSlot:
    action: Literal["run", "wait", "move"] = (
        "move" if step.moved else ("run" if step.units else "wait")
    )
    return PlannedSlot(
        now_s + step.start_s,
        now_s + step.start_s + step.span_s,
        sites[step.site],
        action,
        _setting_of(curve, step.setting_row),
        step.units * unit_s,
    )


def _first(
    step: PlanStep,
    slots: tuple[PlannedSlot, ...],
    site: str,
    sites: list[str],
    curve: GpuCurve,
) -> Intent:
    """The intent of the plan's first slot."""
    if step.moved:
        dest = sites[step.site]
        return Intent("move", dest, None, slots[0].end_s, f"plan: move to {dest}")
    if step.units == 0:
        until = next((s.start_s for s in slots if s.action != "wait"), slots[-1].end_s)
        when = utc_from_s(until).strftime("%H:%M UTC")
        return Intent("wait", site, None, until, f"plan: wait here until {when}")
    setting = _setting_of(curve, step.setting_row)
    reason = f"plan: run here, {_setting_reason(setting)}"
    end_s = slots[0].end_s
    if len(step.phases) < 2:
        return Intent("run", site, setting, end_s, reason)
    # the hull's mix, exactly: the faster setting for its share of the slot, then the slower one
    # (or rest): the slot does the plan's whole units, as the solver costs them
    stop_s = slots[0].start_s + step.phases[0][1] * step.span_s
    slow = step.phases[1][0]
    if slow is None:
        when = utc_from_s(end_s).strftime("%H:%M UTC")
        then = Intent("wait", site, None, end_s, f"plan: this hour's work done; wait until {when}")
    else:
        slow_setting = _setting_of(curve, slow)
        then = Intent(
            "run", site, slow_setting, end_s, f"plan: run here, {_setting_reason(slow_setting)}"
        )
    return Intent("run", site, setting, end_s, reason, stop_s=stop_s, then=then)


def _setting_reason(setting: float | None) -> str:
    return "GPU at its default" if setting is None else f"GPU at {setting:g}"


def describe(slots: tuple[PlannedSlot, ...] | list[PlannedSlot], *, unit: str = "MHz") -> str:
    """The plan in one line, e.g. ``plans to wait until 11:00 UTC, then run at 1410 MHz in FR``."""
    if not slots:
        return "no plan"
    parts: list[str] = []
    i = 0
    while i < len(slots) and len(parts) < 3:
        s = slots[i]
        j = i
        while (
            j + 1 < len(slots)
            and slots[j + 1].action in ("run", "wait")
            and (
                slots[j + 1].action == s.action
                or (s.action == "move" and slots[j + 1].action == "run")
            )
            and slots[j + 1].site == s.site
            and (s.action == "wait" or slots[j + 1].setting == s.setting)
        ):
            j += 1
        end = utc_from_s(slots[j].end_s).strftime("%H:%M UTC")
        how = "default clock" if s.setting is None else f"{s.setting:,.0f} {unit}"
        if s.action == "wait":
            parts.append(f"wait in {s.site} until {end}")
        elif s.action == "move":
            parts.append(f"move to {s.site}, run at {how} until {end}")
        else:
            parts.append(f"run at {how} in {s.site} until {end}")
        i = j + 1
    return "plans to " + ", then ".join(parts)


#: Format version of :func:`plan_record` (the ledger's ``plans.plan_json``).
PLAN_RECORD_VERSION = 1


def plan_record(intent: Intent, *, deadline_s: float | None, unit: str) -> dict[str, object]:
    """The plan as the ledger keeps it (format :data:`PLAN_RECORD_VERSION`): what it does now,
    its next slots (POSIX s, site, ``run``/``wait``/``move``, GPU setting in ``unit``, full-clock
    work s), the deadline, and one line for people (:func:`describe`)."""
    return {
        "v": PLAN_RECORD_VERSION,
        "now": intent.kind,
        "reason": intent.reason,
        "deadline_s": deadline_s,
        "unit": unit,
        "slots": [s.to_dict() for s in intent.steps],
        "summary": describe(intent.steps, unit=unit) if intent.steps else intent.reason,
    }


def describe_record(record: Mapping[str, object]) -> str:
    """The one line of a stored plan (any format version this caftm knows)."""
    summary = record.get("summary")
    return str(summary) if summary else "no plan"
