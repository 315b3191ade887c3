"""Destination choice: the saving over the remaining work against the move's own cost."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from caftm._units import carbon_g
from caftm.control import (
    CAFTM,
    ControlState,
    ForecastAwareCAFTM,
    MoveCost,
    Observation,
    PlanKind,
    Rules,
    SiteOutlook,
    score_moves,
    score_wait,
)
from caftm.control.migration import latest_pause_end_s, mean_intensity, move_cost_g
from caftm.control.threshold import band_around
from caftm.records import State
from caftm.signals.traces import TraceSource

HOUR_S = 3600.0


def test_mean_intensity_uses_the_forecast_then_its_mean() -> None:
    outlook = SiteOutlook("X", 300.0, (100.0, 200.0, 300.0))
    assert mean_intensity(outlook, 2 * HOUR_S, use_forecast=True) == pytest.approx(150.0)
    assert mean_intensity(outlook, HOUR_S, start_offset_s=1.5 * HOUR_S, use_forecast=True) == (
        pytest.approx(250.0)
    )
    # past the forecast the forecast's mean (200) stands in
    assert mean_intensity(outlook, 4 * HOUR_S, use_forecast=True) == pytest.approx(200.0)
    assert mean_intensity(outlook, 4 * HOUR_S, use_forecast=False) == 300.0


def test_move_cost_counts_downtime_idle_power_and_transfer_energy() -> None:
    cost = MoveCost(checkpoint_s=60, transfer_s=240, restart_s=300, transfer_energy_j=3.6e6)
    got = move_cost_g(cost, source_g_per_kwh=500.0, idle_power_w=120.0)
    assert got == pytest.approx(carbon_g(120.0 * 600.0 + 3.6e6, 500.0))


def test_net_saving_is_saving_minus_move_cost_and_ranks_sites() -> None:
    here = SiteOutlook("A", 500.0)
    options = score_moves(
        here,
        (here, SiteOutlook("B", 100.0), SiteOutlook("C", 300.0)),
        power_w=400.0,
        idle_power_w=100.0,
        window_s=5 * HOUR_S,
        cost=MoveCost(),
        use_forecast=False,
    )
    assert [o.site for o in options] == ["B", "C"]
    best = options[0]
    assert best.saving_g == pytest.approx(carbon_g(400.0 * 5 * HOUR_S, 400.0))
    assert best.net_g == pytest.approx(best.saving_g - best.cost_g)
    assert best.baseline_g == pytest.approx(carbon_g(400.0 * 5 * HOUR_S, 500.0))


def test_a_short_remaining_job_does_not_pay_for_an_expensive_move() -> None:
    rules = Rules(move_cost=MoveCost(checkpoint_s=600, transfer_s=3600, restart_s=600))
    ctx = ControlState(State.MIGRATION, "A", 0.0)
    outlooks = (SiteOutlook("A", 500.0), SiteOutlook("B", 350.0))
    obs = Observation(0.0, 500.0, band_around(400, 0.1), outlooks, remaining_work_s=600.0)
    assert CAFTM(rules).plan(ctx, obs).kind is PlanKind.PAUSE
    long_job = replace(obs, remaining_work_s=20 * HOUR_S)
    plan = CAFTM(rules).plan(ctx, long_job)
    assert plan.kind is PlanKind.MOVE and plan.dest == "B"


def test_waiting_pays_when_the_forecast_dips_soon() -> None:
    now = SiteOutlook("A", 500.0, (500.0, 480.0, 470.0, 120.0, 110.0, 100.0) + (450.0,) * 18)
    wait = score_wait(
        now, power_w=400.0, idle_power_w=50.0, work_s=3 * HOUR_S, max_delay_s=24 * HOUR_S
    )
    assert wait is not None and wait.delay_s == 3 * HOUR_S
    assert wait.net_g > 0
    limited = score_wait(
        now, power_w=400.0, idle_power_w=50.0, work_s=3 * HOUR_S, max_delay_s=HOUR_S
    )
    assert limited is not None and limited.delay_s == HOUR_S and limited.net_g < wait.net_g
    assert (
        score_wait(SiteOutlook("A", 500.0), power_w=1, idle_power_w=1, work_s=1, max_delay_s=1e9)
        is None
    )


def test_forecast_policy_waits_in_place_when_only_waiting_pays() -> None:
    forecast = (500.0, 480.0, 470.0, 120.0, 110.0, 100.0) + (450.0,) * 18
    outlooks = (SiteOutlook("A", 500.0, forecast), SiteOutlook("B", 495.0, (495.0,) * 24))
    ctx = ControlState(State.MIGRATION, "A", 0.0)
    obs = Observation(0.0, 500.0, band_around(400, 0.1), outlooks, remaining_work_s=3 * HOUR_S)
    plan = ForecastAwareCAFTM().plan(ctx, obs)
    assert plan.kind is PlanKind.PAUSE
    assert plan.until_s == 3 * HOUR_S


def test_latest_pause_end_respects_the_deadline() -> None:
    assert latest_pause_end_s(0.0, deadline_s=None, remaining_work_s=5.0, max_pause_s=50.0) == 50.0
    assert latest_pause_end_s(0.0, deadline_s=30.0, remaining_work_s=5.0, max_pause_s=50.0) == 25.0


def _outlook(trace: TraceSource, zone: str, at_s: float) -> SiteOutlook:
    """Current value and the next 24 h as an oracle forecast, from the real trace."""
    series = trace.series(zone)
    col = int((at_s - trace.start_s) // trace.step_s)
    return SiteOutlook(zone, float(series[col]), tuple(float(v) for v in series[col : col + 24]))


def test_kr_vs_fr_moving_pays_waiting_in_kr_does_little(real_trace: TraceSource) -> None:
    """DESIGN.md's example on the real 2022 trace: Korea barely varies within a day."""
    rules = Rules(min_dwell_s=0.0)
    for day in (15, 74, 196, 288):  # four seasons, 09:00 UTC
        at_s = datetime(2022, 1, 1, 9, tzinfo=UTC).timestamp() + day * 24 * HOUR_S
        kr, fr = _outlook(real_trace, "KR", at_s), _outlook(real_trace, "FR", at_s)
        obs = Observation(
            at_s,
            kr.intensity_g_per_kwh,
            band_around(400, 0.1),
            (kr, fr),
            remaining_work_s=12 * HOUR_S,
            power_w=600.0,
            idle_power_w=120.0,
        )
        ctx = ControlState(State.MIGRATION, "KR", at_s)
        wait = score_wait(
            kr, power_w=600.0, idle_power_w=120.0, work_s=12 * HOUR_S, max_delay_s=24 * HOUR_S
        )
        move = score_moves(
            kr,
            (kr, fr),
            power_w=600.0,
            idle_power_w=120.0,
            window_s=12 * HOUR_S,
            cost=rules.move_cost,
            use_forecast=True,
        )[0]
        assert wait is not None
        assert move.net_g > 10 * max(wait.net_g, 1.0), (day, move, wait)
        assert wait.net_g < 0.1 * wait.baseline_g  # waiting saves under 10 % in KR
        for policy in (CAFTM(rules), ForecastAwareCAFTM(rules)):
            plan = policy.plan(ctx, obs)
            assert plan.kind is PlanKind.MOVE and plan.dest == "FR", (policy.name, day, plan)
