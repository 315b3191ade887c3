"""The pure transition function of the CAFTM controller.

``transition(ctx, obs, policy) -> Step`` maps the decision state and one observation to the next
state and the actions to run. It reads no clock, touches no GPU, file or network: the live
controller and the simulator execute the returned actions. The policy supplies the three decisions
that differ between strategies (suspend?, clean again?, where to?) and the rules (dwell, ...).

Transition table. Two dwells of ``rules.min_dwell_s``: *resumed* counts from the end of the last
Suspend cycle (a move, pause or failed checkpoint; −∞ at the start, so a job that starts on a dirty
grid leaves at once), *in Tolerance* from the last entry into Tolerance. ``slack``: the deadline
still allows a move's downtime plus the remaining work.


=========  ============================================  =========  ===========================
from       condition (checked top to bottom)             to         actions
=========  ============================================  =========  ===========================
any        ``obs.preempted`` (SIGTERM/SIGINT; no event)  unchanged  Preempt
not DONE   ``obs.finished``                              DONE       Finish, ApplySetting(None)
SCALING    optimiser settled, or policy leaves the GPU   TOLERANCE  ApplySetting(best or None)
SCALING    otherwise (keep profiling)                    SCALING    —
TOLERANCE  resumed ≥ dwell ago, slack, and               SUSPEND    Checkpoint
           ``policy.suspend_reason``
TOLERANCE  in Tolerance < dwell                          TOLERANCE  —
TOLERANCE  ``obs.drift`` (policy tunes the GPU)          SCALING    StartProfiling
TOLERANCE  CI moved > ``reoptimize_ci_fraction`` since   SCALING    StartProfiling
           the last Scaling (policy tunes the GPU)
TOLERANCE  otherwise                                     TOLERANCE  —
SUSPEND    ``obs.checkpoint_ok`` is True                 MIGRATION  —
SUSPEND    ``checkpoint_ok`` False (resumed = now)       TOLERANCE  Resume
SUSPEND    not yet known                                 SUSPEND    —
MIGRATION  plan MOVE to d (resumed = now)                SCALING@d  Migrate(d), StartProfiling
MIGRATION  plan PAUSE until t                            PAUSED     Pause(min(t, now+recheck))
MIGRATION  plan STAY (resumed = now)                     TOLERANCE  Resume
PAUSED     past the latest pause end (deadline)          SCALING    Resume, StartProfiling
PAUSED     ``policy.is_clean`` (CI ≤ band.resume_below)  SCALING    Resume, StartProfiling
PAUSED     ``now ≥ pause_until``                         SCALING    Resume, StartProfiling
           (each of the three: resumed = now)
PAUSED     otherwise                                     PAUSED     Pause(next wake-up)
DONE       always                                        DONE       —
=========  ============================================  =========  ===========================

Hysteresis lives in the band (suspend at ``suspend_at``, clean only at ``resume_below``); the
dwells bound the rate of suspends and of re-Scaling to one per ``min_dwell_s`` each, whatever the
signal does.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

from caftm.control.migration import PlanKind, latest_pause_end_s
from caftm.control.states import (
    ApplySetting,
    Checkpoint,
    ControlState,
    Finish,
    Migrate,
    Observation,
    Pause,
    Preempt,
    Resume,
    StartProfiling,
    Step,
)
from caftm.records import RunStatus, State

if TYPE_CHECKING:
    from caftm.control.policies import Policy


def transition(ctx: ControlState, obs: Observation, policy: Policy) -> Step:
    """Apply the table above once. Pure: same inputs, same output."""
    if obs.preempted:
        return Step(ctx, (Preempt(),))
    if ctx.state is State.DONE:
        return Step(ctx)
    if obs.finished:
        done = obs.end_status in (RunStatus.FINISHED, RunStatus.COMPLETED)
        reason = "training finished" if done else f"run ended: {obs.end_status}"
        return _to(ctx, obs, State.DONE, reason, Finish(), ApplySetting(None))
    handler = _HANDLERS[ctx.state]
    return handler(ctx, obs, policy)


def _to(
    ctx: ControlState,
    obs: Observation,
    state: State,
    reason: str,
    *actions: ApplySetting | StartProfiling | Checkpoint | Migrate | Pause | Resume | Finish,
    **changes: object,
) -> Step:
    new = replace(ctx, state=state, entered_s=obs.now_s, **changes)  # type: ignore[arg-type]
    if state is State.TOLERANCE:
        new = replace(new, tolerance_since_s=obs.now_s)
    if ctx.state in _SUSPEND_CYCLE and state in (State.SCALING, State.TOLERANCE):
        new = replace(new, resumed_s=obs.now_s)  # training resumes: the suspend dwell restarts
    return Step(new, tuple(actions), reason)


def _scaling(ctx: ControlState, obs: Observation, policy: Policy) -> Step:
    if not policy.optimises_gpu:
        return _to(
            ctx,
            obs,
            State.TOLERANCE,
            "GPU left at default",
            ApplySetting(None),
            setting=None,
            scaling_intensity_g_per_kwh=obs.intensity_g_per_kwh,
        )
    if obs.optimizer_settled:
        return _to(
            ctx,
            obs,
            State.TOLERANCE,
            f"optimiser settled at {obs.best_setting}",
            ApplySetting(obs.best_setting),
            setting=obs.best_setting,
        )
    return Step(ctx)


def _has_slack(obs: Observation, policy: Policy) -> bool:
    deadline = policy.rules.deadline_s
    if deadline is None:
        return True
    needed = (obs.remaining_work_s or 0.0) + policy.rules.move_cost.downtime_s
    return obs.now_s + needed < deadline


def _tolerance(ctx: ControlState, obs: Observation, policy: Policy) -> Step:
    dwell_s = policy.rules.min_dwell_s
    if obs.now_s - ctx.resumed_s >= dwell_s and _has_slack(obs, policy):
        reason = policy.suspend_reason(ctx, obs)
        if reason:
            return _to(ctx, obs, State.SUSPEND, reason, Checkpoint())
    if obs.now_s - ctx.tolerance_since_s < dwell_s or not policy.optimises_gpu:
        return Step(ctx)
    ci = obs.intensity_g_per_kwh
    if obs.drift:
        return _to(
            ctx,
            obs,
            State.SCALING,
            "GPU model drifted",
            StartProfiling(ci),
            scaling_intensity_g_per_kwh=ci,
        )
    ref = ctx.scaling_intensity_g_per_kwh
    fraction = policy.rules.reoptimize_ci_fraction
    if math.isfinite(ref) and abs(ci - ref) > fraction * ref:
        return _to(
            ctx,
            obs,
            State.SCALING,
            f"intensity moved {ref:.0f} → {ci:.0f} g/kWh (> {fraction:.0%})",
            StartProfiling(ci),
            scaling_intensity_g_per_kwh=ci,
        )
    return Step(ctx)


def _suspend(ctx: ControlState, obs: Observation, policy: Policy) -> Step:
    if obs.checkpoint_ok is True:
        return _to(ctx, obs, State.MIGRATION, "checkpoint complete")
    if obs.checkpoint_ok is False:
        return _to(ctx, obs, State.TOLERANCE, "checkpoint failed; carrying on here", Resume())
    return Step(ctx)


def _migration(ctx: ControlState, obs: Observation, policy: Policy) -> Step:
    plan = policy.plan(ctx, obs)
    ci = obs.intensity_g_per_kwh
    if plan.kind is PlanKind.MOVE and plan.dest and plan.dest != ctx.site:
        dest = obs.outlook(plan.dest)
        dest_ci = dest.intensity_g_per_kwh if dest is not None else ci
        return _to(
            ctx,
            obs,
            State.SCALING,
            plan.reason,
            Migrate(plan.dest, plan.net_saving_g),
            StartProfiling(dest_ci),
            site=plan.dest,
            scaling_intensity_g_per_kwh=dest_ci,
        )
    if plan.kind is PlanKind.PAUSE and plan.until_s > obs.now_s:
        wake = min(plan.until_s, obs.now_s + policy.rules.pause_recheck_s)
        return _to(ctx, obs, State.PAUSED, plan.reason, Pause(wake), pause_until_s=plan.until_s)
    return _to(ctx, obs, State.TOLERANCE, plan.reason or "nothing better; carrying on", Resume())


def _paused(ctx: ControlState, obs: Observation, policy: Policy) -> Step:
    rules = policy.rules
    latest = latest_pause_end_s(
        obs.now_s,
        deadline_s=rules.deadline_s,
        remaining_work_s=obs.remaining_work_s,
        max_pause_s=math.inf,
    )
    ci = obs.intensity_g_per_kwh
    resume = (Resume(), StartProfiling(ci))
    if obs.now_s >= latest:
        return _to(
            ctx, obs, State.SCALING, "deadline: resuming", *resume, scaling_intensity_g_per_kwh=ci
        )
    if policy.is_clean(ctx, obs):
        return _to(
            ctx,
            obs,
            State.SCALING,
            f"clean again: {ci:.0f} ≤ {obs.band.resume_below:.0f} g/kWh",
            *resume,
            scaling_intensity_g_per_kwh=ci,
        )
    if obs.now_s >= ctx.pause_until_s:
        return _to(
            ctx, obs, State.SCALING, "planned pause over", *resume, scaling_intensity_g_per_kwh=ci
        )
    wake = min(ctx.pause_until_s, obs.now_s + rules.pause_recheck_s, latest)
    return Step(ctx, (Pause(wake),))


_SUSPEND_CYCLE = frozenset({State.SUSPEND, State.MIGRATION, State.PAUSED})

_HANDLERS = {
    State.SCALING: _scaling,
    State.TOLERANCE: _tolerance,
    State.SUSPEND: _suspend,
    State.MIGRATION: _migration,
    State.PAUSED: _paused,
}
