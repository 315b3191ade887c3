"""One :class:`Policy` interface and the strategies that implement it.

A policy answers three questions for the pure :func:`~caftm.control.transition.transition`:
suspend now? (Tolerance), clean again? (Paused) and where to? (Migration). Everything else —
dwell, deadline slack, Scaling — is common. The live controller and the trace-driven simulator
call the same ``policy.decide(ctx, obs)``.

==================  ==================================  ====================================
policy              suspends when                       then
==================  ==================================  ====================================
``planner``         its plan's next hour moves or       plans site, waits and GPU setting to
(the default)       waits (re-planned each hour over    the deadline (default 1.1× the job's
                    the forecasts; see                  expected length) over forecasts:
                    :mod:`caftm.control.planner`)       the offline optimum's solver
``caftm``           CI ≥ θ                              move to the best site by net saving
                                                        (current intensities), else pause
                                                        until clean (deadline-bounded)
``forecast-caftm``  CI ≥ θ                              best of: move (forecast-averaged
                                                        saving), wait for the cleanest
                                                        forecast start, or carry on
``suspend-resume``  CI ≥ θ                              pause until clean; never moves
``greedy-cleanest`` another site cleaner by a fraction  move there, the move's cost ignored
``carbon-agnostic`` never                               — (GPU left at its defaults too)
==================  ==================================  ====================================
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from caftm.control.migration import (
    HOUR_S,
    MoveCost,
    Plan,
    PlanKind,
    latest_pause_end_s,
    score_moves,
    score_wait,
)
from caftm.control.states import ControlState, Observation, SiteOutlook, Step
from caftm.control.transition import transition
from caftm.errors import ConfigError

if TYPE_CHECKING:
    from caftm.control.planner import Intent


@dataclass(frozen=True, slots=True)
class Rules:
    """What every policy obeys. Times in s, POSIX for ``deadline_s``.

    Attributes:
        min_dwell_s: minimum time in Tolerance before leaving it (anti-flapping).
        reoptimize_ci_fraction: re-run Scaling when CI moved more than this fraction.
        deadline_s: the job must finish by then (None: no deadline).
        move_cost: the cost of one move.
        horizon_s: the saving of a move is counted over min(remaining work, horizon).
        pause_recheck_s: while paused, re-evaluate at least this often.
        max_pause_s: the longest pause when there is no deadline.
    """

    min_dwell_s: float = 1800.0
    reoptimize_ci_fraction: float = 0.15
    deadline_s: float | None = None
    move_cost: MoveCost = field(default_factory=MoveCost)
    horizon_s: float = 24 * HOUR_S
    pause_recheck_s: float = 900.0
    max_pause_s: float = 24 * HOUR_S

    def window_s(self, remaining_work_s: float | None) -> float:
        """The span (s) a move's saving is counted over: min(remaining work, horizon)."""
        return self.horizon_s if remaining_work_s is None else min(remaining_work_s, self.horizon_s)


class Policy(abc.ABC):
    """The one decision interface: the suspend test, the clean test and the Migration plan."""

    #: Registry name (config ``policy.name``).
    name: ClassVar[str] = "policy"
    #: Whether Scaling runs the GPU optimiser (False: device defaults).
    optimises_gpu: ClassVar[bool] = True
    #: Whether forecasts are needed (the refresher then fetches them).
    uses_forecast: ClassVar[bool] = False
    #: Plans solved so far (a planning policy counts its solves; the simulator reports them).
    solves: int = 0

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or Rules()

    def decide(self, ctx: ControlState, obs: Observation) -> Step:
        """The next state and actions (the pure transition with this policy's answers)."""
        return transition(ctx, obs, self)

    def next_decision_s(self, now_s: float) -> float:
        """When this policy wants to decide again while training (inf: at the next poll)."""
        return math.inf

    def current_plan(self) -> Intent | None:
        """The plan this policy is carrying out, for the ledger and ``caftm status`` (None: it
        makes none)."""
        return None

    @abc.abstractmethod
    def suspend_reason(self, ctx: ControlState, obs: Observation) -> str | None:
        """Why to leave Tolerance for Suspend now, or None to keep training."""

    @abc.abstractmethod
    def plan(self, ctx: ControlState, obs: Observation) -> Plan:
        """The Migration decision after a complete checkpoint."""

    def is_clean(self, ctx: ControlState, obs: Observation) -> bool:
        """Whether a pause may end because the grid is clean again (hysteresis: resume level)."""
        return obs.intensity_g_per_kwh <= obs.band.resume_below

    # helpers shared by the strategies
    def _latest_pause_end_s(self, obs: Observation) -> float:
        return latest_pause_end_s(
            obs.now_s,
            deadline_s=self.rules.deadline_s,
            remaining_work_s=obs.remaining_work_s,
            max_pause_s=self.rules.max_pause_s,
        )

    def _current(self, ctx: ControlState, obs: Observation) -> SiteOutlook:
        return obs.outlook(ctx.site) or SiteOutlook(ctx.site, obs.intensity_g_per_kwh)

    def _best_move(self, ctx: ControlState, obs: Observation, *, use_forecast: bool) -> Plan | None:
        options = score_moves(
            self._current(ctx, obs),
            obs.outlooks,
            power_w=obs.power_w,
            idle_power_w=obs.idle_power_w,
            window_s=self.rules.window_s(obs.remaining_work_s),
            cost=self.rules.move_cost,
            use_forecast=use_forecast,
        )
        if options and options[0].net_g > self.rules.move_cost.margin_for_g(options[0].baseline_g):
            best = options[0]
            return Plan(
                PlanKind.MOVE,
                f"move to {best.site}: saves {best.saving_g:.0f} g, move costs {best.cost_g:.1f} g",
                dest=best.site,
                net_saving_g=best.net_g,
            )
        return None

    def _pause_until_clean(self, obs: Observation, why: str) -> Plan:
        latest = self._latest_pause_end_s(obs)
        if latest <= obs.now_s:
            return Plan(PlanKind.STAY, f"{why}; no time left to wait before the deadline")
        return Plan(PlanKind.PAUSE, f"{why}; pausing until clean", until_s=latest)

    def _suspend_above_threshold(self, obs: Observation) -> str | None:
        ci, theta = obs.intensity_g_per_kwh, obs.band.suspend_at
        if ci >= theta:
            return f"intensity {ci:.0f} ≥ θ {theta:.0f} g/kWh"
        return None


class CAFTM(Policy):
    """The seed's policy: suspend at θ; move to the best site by net saving, else pause."""

    name = "caftm"

    def suspend_reason(self, ctx: ControlState, obs: Observation) -> str | None:
        return self._suspend_above_threshold(obs)

    def plan(self, ctx: ControlState, obs: Observation) -> Plan:
        move = self._best_move(ctx, obs, use_forecast=False)
        if move is not None:
            return move
        return self._pause_until_clean(obs, "no site better by the margin")


class ForecastAwareCAFTM(Policy):
    """CAFTM using forecasts: compares moving, waiting for a cleaner hour, and carrying on."""

    name = "forecast-caftm"
    uses_forecast = True

    def suspend_reason(self, ctx: ControlState, obs: Observation) -> str | None:
        return self._suspend_above_threshold(obs)

    def plan(self, ctx: ControlState, obs: Observation) -> Plan:
        current = self._current(ctx, obs)
        if not current.forecast_g_per_kwh:
            move = self._best_move(ctx, obs, use_forecast=False)
            return move or self._pause_until_clean(obs, "no forecast; no site better by the margin")
        move = self._best_move(ctx, obs, use_forecast=True)
        latest = self._latest_pause_end_s(obs)
        wait = score_wait(
            current,
            power_w=obs.power_w,
            idle_power_w=obs.idle_power_w,
            work_s=self.rules.window_s(obs.remaining_work_s),
            max_delay_s=latest - obs.now_s,
        )
        wait_net = wait.net_g if wait is not None else -math.inf
        if move is not None and move.net_saving_g >= wait_net:
            return move
        if wait is not None and wait_net > self.rules.move_cost.margin_for_g(wait.baseline_g):
            return Plan(
                PlanKind.PAUSE,
                f"waiting {wait.delay_s / HOUR_S:.0f} h here saves {wait_net:.0f} g net",
                until_s=obs.now_s + wait.delay_s,
                net_saving_g=wait_net,
            )
        return Plan(PlanKind.STAY, "neither moving nor waiting pays; carrying on")


class SuspendResume(Policy):
    """Wait awhile: pause when dirty, resume when clean, never move."""

    name = "suspend-resume"

    def suspend_reason(self, ctx: ControlState, obs: Observation) -> str | None:
        return self._suspend_above_threshold(obs)

    def plan(self, ctx: ControlState, obs: Observation) -> Plan:
        return self._pause_until_clean(obs, "dirty grid")


class GreedyCleanest(Policy):
    """Always go to the currently cleanest site (the move's cost ignored).

    Args:
        switch_fraction: another site must be cleaner by this fraction (hysteresis).
    """

    name = "greedy-cleanest"

    def __init__(self, rules: Rules | None = None, *, switch_fraction: float = 0.1) -> None:
        super().__init__(rules)
        if not 0.0 <= switch_fraction < 1.0:
            raise ConfigError(f"switch_fraction {switch_fraction} must be within [0, 1)")
        self.switch_fraction = switch_fraction

    def _cleanest(self, ctx: ControlState, obs: Observation) -> SiteOutlook | None:
        limit = obs.intensity_g_per_kwh * (1.0 - self.switch_fraction)
        others = [o for o in obs.outlooks if o.site != ctx.site and o.intensity_g_per_kwh < limit]
        return min(others, key=lambda o: o.intensity_g_per_kwh, default=None)

    def suspend_reason(self, ctx: ControlState, obs: Observation) -> str | None:
        best = self._cleanest(ctx, obs)
        if best is None:
            return None
        return f"{best.site} is cleaner ({best.intensity_g_per_kwh:.0f} g/kWh)"

    def plan(self, ctx: ControlState, obs: Observation) -> Plan:
        best = self._cleanest(ctx, obs)
        if best is None:
            return Plan(PlanKind.STAY, "no cleaner site")
        return Plan(PlanKind.MOVE, f"move to cleanest site {best.site}", dest=best.site)

    def is_clean(self, ctx: ControlState, obs: Observation) -> bool:
        return True


class CarbonAgnostic(Policy):
    """The baseline: never suspends, never moves, GPU at its defaults."""

    name = "carbon-agnostic"
    optimises_gpu = False

    def suspend_reason(self, ctx: ControlState, obs: Observation) -> str | None:
        return None

    def plan(self, ctx: ControlState, obs: Observation) -> Plan:
        return Plan(PlanKind.STAY, "carbon-agnostic")


# the planner builds on Policy and Rules above; imported here so the registry holds it
from caftm.control.planner import Planner  # noqa: E402

POLICIES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (Planner, CAFTM, ForecastAwareCAFTM, SuspendResume, GreedyCleanest, CarbonAgnostic)
}


def make_policy(name: str, rules: Rules | None = None) -> Policy:
    """The policy registered as ``name``.

    Raises:
        ConfigError: unknown name.
    """
    try:
        cls = POLICIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown policy {name!r}; choose one of {', '.join(sorted(POLICIES))}"
        ) from None
    return cls(rules)
