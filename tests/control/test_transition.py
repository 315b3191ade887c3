"""Every row of the transition table, one test each (the function is pure: no clock, no GPU)."""

from __future__ import annotations

import importlib
import math
from dataclasses import replace

import pytest

from caftm.control import (
    CAFTM,
    ApplySetting,
    Band,
    CarbonAgnostic,
    Checkpoint,
    ControlState,
    Finish,
    Migrate,
    MoveCost,
    Observation,
    Pause,
    Preempt,
    Resume,
    Rules,
    SiteOutlook,
    StartProfiling,
    SuspendResume,
    transition,
)
from caftm.records import State

transition_module = importlib.import_module("caftm.control.transition")
NOW = 100_000.0
BAND = Band(suspend_at=400.0, resume_below=360.0)
RULES = Rules(min_dwell_s=1800.0, reoptimize_ci_fraction=0.15, pause_recheck_s=900.0)


def ctx(state: State, **changes: object) -> ControlState:
    base = ControlState(
        state,
        "KR",
        entered_s=0.0,
        scaling_intensity_g_per_kwh=300.0,
        setting=1500.0,
        tolerance_since_s=0.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def obs(ci: float = 300.0, **changes: object) -> Observation:
    base = Observation(
        now_s=NOW,
        intensity_g_per_kwh=ci,
        band=BAND,
        outlooks=(SiteOutlook("KR", ci), SiteOutlook("FR", 60.0)),
        remaining_work_s=10 * 3600.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_table_in_docstring_names_every_state() -> None:
    doc = transition_module.__doc__ or ""
    for state in State:
        assert state.name in doc


@pytest.mark.parametrize("state", [s for s in State if s is not State.DONE])
def test_finished_goes_to_done_and_restores_the_gpu(state: State) -> None:
    step = transition(ctx(state), obs(finished=True), CAFTM(RULES))
    assert step.state.state is State.DONE
    assert step.actions == (Finish(), ApplySetting(None))


@pytest.mark.parametrize("state", list(State))
def test_a_preemption_checkpoints_and_keeps_the_state(state: State) -> None:
    step = transition(ctx(state), obs(900.0, preempted=True, finished=True), CAFTM(RULES))
    assert step.state == ctx(state) and step.actions == (Preempt(),) and not step.changed


def test_the_table_lists_the_preemption_action() -> None:
    rows = [line for line in (transition_module.__doc__ or "").splitlines() if "Preempt" in line]
    assert rows and "obs.preempted" in rows[0]


def test_done_is_absorbing() -> None:
    step = transition(ctx(State.DONE), obs(900.0, drift=True), CAFTM(RULES))
    assert step.state == ctx(State.DONE) and not step.actions and not step.changed


def test_scaling_settled_goes_to_tolerance_with_the_best_setting() -> None:
    step = transition(
        ctx(State.SCALING), obs(optimizer_settled=True, best_setting=1410.0), CAFTM(RULES)
    )
    assert step.state.state is State.TOLERANCE
    assert step.actions == (ApplySetting(1410.0),)
    assert step.state.setting == 1410.0
    assert step.state.tolerance_since_s == NOW


def test_scaling_without_gpu_tuning_leaves_the_default() -> None:
    step = transition(ctx(State.SCALING), obs(), CarbonAgnostic(RULES))
    assert step.state.state is State.TOLERANCE
    assert step.actions == (ApplySetting(None),)


def test_scaling_keeps_profiling_until_settled() -> None:
    step = transition(ctx(State.SCALING), obs(900.0), CAFTM(RULES))
    assert step.state == ctx(State.SCALING) and not step.actions


def test_tolerance_waits_out_the_dwells() -> None:
    just_resumed = ctx(State.TOLERANCE, tolerance_since_s=NOW - 60.0, resumed_s=NOW - 60.0)
    assert not transition(just_resumed, obs(900.0), CAFTM(RULES)).changed
    assert not transition(just_resumed, obs(100.0, drift=True), CAFTM(RULES)).changed
    # re-scaled a minute ago, but resumed long ago: may suspend, may not re-scale yet
    rescaled = ctx(State.TOLERANCE, tolerance_since_s=NOW - 60.0, resumed_s=NOW - 7200.0)
    assert transition(rescaled, obs(900.0), CAFTM(RULES)).state.state is State.SUSPEND
    assert not transition(rescaled, obs(100.0, drift=True), CAFTM(RULES)).changed


def test_a_job_starting_on_a_dirty_grid_leaves_at_once() -> None:
    fresh = ctx(State.TOLERANCE, tolerance_since_s=NOW)  # resumed_s: −∞ before any suspend
    assert transition(fresh, obs(900.0), CAFTM(RULES)).state.state is State.SUSPEND


@pytest.mark.parametrize(
    ("state", "observation"),
    [
        (State.SUSPEND, obs(500.0, checkpoint_ok=False)),
        (State.MIGRATION, obs(500.0)),
        (State.PAUSED, obs(100.0)),
    ],
)
def test_every_resume_restarts_the_suspend_dwell(state: State, observation: Observation) -> None:
    before = ctx(state, pause_until_s=NOW + 3600.0)
    step = transition(before, observation, CAFTM(RULES))
    assert step.state.state in (State.SCALING, State.TOLERANCE)
    assert step.state.resumed_s == NOW


def test_tolerance_suspends_at_threshold() -> None:
    step = transition(ctx(State.TOLERANCE), obs(400.0), CAFTM(RULES))
    assert step.state.state is State.SUSPEND
    assert step.actions == (Checkpoint(),)
    assert "θ 400" in step.reason


def test_tolerance_below_threshold_keeps_training() -> None:
    step = transition(ctx(State.TOLERANCE), obs(330.0), CAFTM(RULES))
    assert not step.changed and not step.actions


def test_tolerance_does_not_suspend_without_deadline_slack() -> None:
    rules = replace(RULES, deadline_s=NOW + 10 * 3600.0 + 100.0)  # < work + downtime left
    step = transition(ctx(State.TOLERANCE), obs(900.0), CAFTM(rules))
    assert step.state.state is not State.SUSPEND


def test_tolerance_drift_goes_back_to_scaling() -> None:
    step = transition(ctx(State.TOLERANCE), obs(310.0, drift=True), CAFTM(RULES))
    assert step.state.state is State.SCALING
    assert step.actions == (StartProfiling(310.0),)


def test_tolerance_large_ci_move_goes_back_to_scaling() -> None:
    step = transition(ctx(State.TOLERANCE), obs(250.0), CAFTM(RULES))  # -16.7 %
    assert step.state.state is State.SCALING
    assert step.state.scaling_intensity_g_per_kwh == 250.0
    small = transition(ctx(State.TOLERANCE), obs(260.0), CAFTM(RULES))  # -13.3 %
    assert not small.changed


def test_tolerance_ignores_ci_moves_when_the_gpu_is_not_tuned() -> None:
    step = transition(ctx(State.TOLERANCE), obs(100.0, drift=True), CarbonAgnostic(RULES))
    assert not step.changed


@pytest.mark.parametrize(
    ("ok", "expected", "actions"),
    [(True, State.MIGRATION, ()), (False, State.TOLERANCE, (Resume(),)), (None, State.SUSPEND, ())],
)
def test_suspend_waits_for_the_checkpoint(
    ok: bool | None, expected: State, actions: tuple[object, ...]
) -> None:
    step = transition(ctx(State.SUSPEND), obs(500.0, checkpoint_ok=ok), CAFTM(RULES))
    assert step.state.state is expected
    assert step.actions == actions


def test_migration_moves_when_it_pays() -> None:
    step = transition(ctx(State.MIGRATION), obs(500.0), CAFTM(RULES))
    assert step.state.state is State.SCALING
    assert step.state.site == "FR"
    migrate = step.actions[0]
    assert isinstance(migrate, Migrate) and migrate.dest == "FR" and migrate.net_saving_g > 0
    assert step.actions[1] == StartProfiling(60.0)


def test_migration_pauses_when_no_site_is_better() -> None:
    flat = (SiteOutlook("KR", 500.0), SiteOutlook("JP-TK", 495.0))
    step = transition(ctx(State.MIGRATION), obs(500.0, outlooks=flat), CAFTM(RULES))
    assert step.state.state is State.PAUSED
    assert step.actions == (Pause(NOW + RULES.pause_recheck_s),)
    assert step.state.pause_until_s > NOW


def test_migration_stays_when_the_deadline_leaves_no_time_to_wait() -> None:
    rules = replace(RULES, deadline_s=NOW + 10 * 3600.0)  # exactly the remaining work
    flat = (SiteOutlook("KR", 500.0),)
    step = transition(ctx(State.MIGRATION), obs(500.0, outlooks=flat), CAFTM(rules))
    assert step.state.state is State.TOLERANCE
    assert step.actions == (Resume(),)


def paused(**changes: object) -> ControlState:
    return replace(ctx(State.PAUSED, pause_until_s=NOW + 5 * 3600.0), **changes)  # type: ignore[arg-type]


def test_paused_resumes_when_clean_below_the_hysteresis_level() -> None:
    policy = SuspendResume(RULES)
    assert not transition(paused(), obs(370.0), policy).changed  # below θ, above resume level
    step = transition(paused(), obs(360.0), policy)
    assert step.state.state is State.SCALING
    assert step.actions == (Resume(), StartProfiling(360.0))


def test_paused_keeps_waiting_in_rechecks() -> None:
    step = transition(paused(), obs(450.0), SuspendResume(RULES))
    assert step.state == paused()
    assert step.actions == (Pause(NOW + RULES.pause_recheck_s),)


def test_paused_resumes_when_the_planned_pause_is_over() -> None:
    step = transition(paused(pause_until_s=NOW), obs(450.0), SuspendResume(RULES))
    assert step.state.state is State.SCALING
    assert step.reason == "planned pause over"


def test_paused_never_waits_past_the_deadline() -> None:
    rules = replace(RULES, deadline_s=NOW + 10 * 3600.0 + 600.0)
    waiting = transition(paused(), obs(450.0), SuspendResume(rules))
    assert waiting.actions == (Pause(NOW + 600.0),)  # wakes exactly at the latest start
    late = replace(obs(450.0), now_s=NOW + 600.0)
    step = transition(paused(), late, SuspendResume(rules))
    assert step.state.state is State.SCALING
    assert step.reason.startswith("deadline")


def test_transition_is_pure() -> None:
    state, observation, policy = ctx(State.TOLERANCE), obs(450.0), CAFTM(RULES)
    first = transition(state, observation, policy)
    again = transition(state, observation, policy)
    assert first == again
    assert state == ctx(State.TOLERANCE)


def test_move_cost_margin_blocks_marginal_moves() -> None:
    rules = replace(RULES, move_cost=MoveCost(margin_g=math.inf))  # nothing can beat it
    step = transition(ctx(State.MIGRATION), obs(500.0), CAFTM(rules))
    assert step.state.state is State.PAUSED
