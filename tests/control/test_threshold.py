"""θ modes: absolute, relative (forecast percentile) and auto (break-even), with hysteresis."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caftm.control import (
    MoveCost,
    SiteOutlook,
    ThresholdMode,
    ThresholdSpec,
    compute_band,
    score_moves,
)
from caftm.control.threshold import break_even_threshold
from caftm.errors import ConfigError


def test_absolute_band_has_hysteresis() -> None:
    band = compute_band(
        ThresholdSpec(ThresholdMode.ABSOLUTE, 400.0, hysteresis_fraction=0.2),
        current=SiteOutlook("A", 100.0),
    )
    assert band.suspend_at == 400.0
    assert band.resume_below == pytest.approx(320.0)


def test_relative_is_a_percentile_of_the_next_24_hours() -> None:
    forecast = tuple(float(v) for v in range(48))  # only the first 24 count
    spec = ThresholdSpec(ThresholdMode.RELATIVE, percentile=75.0, hysteresis_fraction=0.0)
    band = compute_band(spec, current=SiteOutlook("A", 10.0, forecast))
    assert band.suspend_at == pytest.approx(np.percentile(np.arange(24), 75))


def test_relative_falls_back_to_history_then_never() -> None:
    spec = ThresholdSpec(ThresholdMode.RELATIVE, percentile=50.0)
    band = compute_band(
        spec, current=SiteOutlook("A", 10.0), history_g_per_kwh=(100.0, 200.0, 300.0)
    )
    assert band.suspend_at == 200.0
    never = compute_band(spec, current=SiteOutlook("A", 10.0))
    assert math.isinf(never.suspend_at)


def test_auto_threshold_is_exactly_where_a_move_starts_to_pay() -> None:
    rng = np.random.default_rng(7)
    for _ in range(200):
        cost = MoveCost(
            checkpoint_s=float(rng.uniform(0, 600)),
            transfer_s=float(rng.uniform(0, 1800)),
            restart_s=float(rng.uniform(0, 600)),
            transfer_energy_j=float(rng.uniform(0, 1e6)),
            margin_g=float(rng.uniform(0, 50)),
            margin_fraction=float(rng.uniform(0, 0.2)),
        )
        power_w, idle_w = float(rng.uniform(100, 700)), float(rng.uniform(30, 150))
        window_s = float(rng.uniform(600, 48 * 3600))
        others = [SiteOutlook(f"D{i}", float(rng.uniform(20, 800))) for i in range(3)]
        theta = break_even_threshold(
            [SiteOutlook("S", 0.0), *others],
            "S",
            power_w=power_w,
            idle_power_w=idle_w,
            window_s=window_s,
            cost=cost,
        )
        if not math.isfinite(theta) or theta > 2400:
            continue
        for factor, pays in ((1.001, True), (0.999, False)):
            here = SiteOutlook("S", theta * factor)
            best = score_moves(
                here,
                tuple(others),
                power_w=power_w,
                idle_power_w=idle_w,
                window_s=window_s,
                cost=cost,
                use_forecast=False,
            )[0]
            assert (best.net_g > cost.margin_for_g(best.baseline_g)) is pays


def test_auto_never_fires_when_the_move_outlasts_the_work() -> None:
    cost = MoveCost(checkpoint_s=3600, transfer_s=3600, restart_s=3600)
    theta = break_even_threshold(
        [SiteOutlook("S", 500), SiteOutlook("D", 10)],
        "S",
        power_w=100.0,
        idle_power_w=100.0,
        window_s=600.0,
        cost=cost,
    )
    assert math.isinf(theta)
    spec = ThresholdSpec(ThresholdMode.AUTO)
    band = compute_band(spec, current=SiteOutlook("S", 500), candidates=[SiteOutlook("S", 500)])
    assert math.isinf(band.suspend_at)  # no other site: nothing to move to


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"percentile": 101.0}, r"threshold\.percentile 101\.0 must be within 0\.\.100"),
        ({"hysteresis_fraction": 1.0}, r"hysteresis_fraction 1\.0 must be within \[0, 1\)"),
        ({"hysteresis_fraction": -0.1}, r"hysteresis_fraction -0\.1 must be within \[0, 1\)"),
        ({"value_g_per_kwh": -5.0}, r"value_g_per_kwh -5\.0 must be a non-negative number"),
    ],
)
def test_bad_specs_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ThresholdSpec(**kwargs)  # type: ignore[arg-type]
