"""Forecast models, back-testing, model selection and forecast readings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from tests.conftest import shared_file

from caftm.errors import ConfigError, ProviderError
from caftm.signals.base import Kind
from caftm.signals.forecast import (
    CANDIDATES,
    Blend,
    ProfileAnomaly,
    Regression,
    SeasonalNaive,
    backtest,
    fill_gaps_for_model,
    forecast_readings,
    select_model,
)
from caftm.signals.traces import TraceSource, load_trace

T0 = datetime(2022, 1, 1, tzinfo=UTC)


def structured_series(days: int = 70, seed: int = 0) -> np.ndarray:
    """Daily shape + weekday effect + slowly wandering level (AR(1)) + hourly noise."""
    rng = np.random.default_rng(seed)
    hours = np.arange(days * 24)
    shape = 80 * np.sin(2 * np.pi * hours / 24) + 30 * np.cos(4 * np.pi * hours / 24)
    weekday = np.where((hours // 24) % 7 >= 5, -40.0, 0.0)
    level = np.zeros(hours.size)
    for i in range(1, hours.size):
        level[i] = 0.97 * level[i - 1] + rng.normal(0, 12)
    return 400 + shape + weekday + level + rng.normal(0, 5, hours.size)


def test_seasonal_naive_repeats_the_last_day() -> None:
    series = np.arange(72, dtype=float)
    np.testing.assert_array_equal(
        SeasonalNaive().fit(series, 3600).predict(30), np.concatenate([series[48:], series[48:54]])
    )
    np.testing.assert_array_equal(SeasonalNaive().fit(series, 1800).predict(3), series[24:27])


@pytest.mark.parametrize("factory", [ProfileAnomaly, Regression, Blend])
def test_models_recover_a_pure_daily_pattern(factory: type) -> None:
    hours = np.arange(24 * 40)
    series = 300 + 100 * np.sin(2 * np.pi * hours / 24)
    predicted = factory().fit(series, 3600).predict(48)
    expected = 300 + 100 * np.sin(2 * np.pi * np.arange(hours.size, hours.size + 48) / 24)
    np.testing.assert_allclose(predicted, expected, atol=1.0)


def test_better_models_beat_seasonal_naive_on_known_structure() -> None:
    series = structured_series()
    origins = list(range(40 * 24, 69 * 24, 25))
    naive = backtest(series, SeasonalNaive, origins, 24, 3600, window_steps=35 * 24)
    selection = select_model(series[: 40 * 24], 3600, n_origins=8)
    assert selection.name != "seasonal_naive"
    assert set(selection.mape_pct) == set(CANDIDATES)
    chosen = backtest(series, selection.factory, origins, 24, 3600, window_steps=35 * 24)
    assert np.nanmean(chosen) < 0.8 * np.nanmean(naive)
    assert np.nanmean(chosen[:, 23]) < np.nanmean(naive[:, 23])
    assert np.nanmean(chosen[:, 0]) < 0.5 * np.nanmean(naive[:, 0])


def test_backtest_uses_only_data_before_each_origin() -> None:
    series = structured_series(days=20)
    poisoned = series.copy()
    poisoned[15 * 24 :] = 2000.0  # the future, changed
    origin = [15 * 24]
    clean = backtest(series, Regression, origin, 24, 3600, window_steps=14 * 24)
    seen = Regression().fit(series[24 : 15 * 24], 3600).predict(24)
    np.testing.assert_allclose(
        clean[0], np.abs(seen - series[origin[0] : origin[0] + 24]) / series[origin[0] :][:24] * 100
    )
    other = backtest(poisoned, Regression, origin, 24, 3600, window_steps=14 * 24)
    np.testing.assert_allclose(  # same forecast, only the actuals differ
        np.abs(2000.0 - seen) / 2000.0 * 100, other[0]
    )


def test_bad_histories_are_refused() -> None:
    with pytest.raises(ConfigError, match="at least"):
        Regression().fit(np.ones(30), 3600)
    with pytest.raises(ConfigError, match="finite"):
        SeasonalNaive().fit(np.array([np.nan] * 48), 3600)
    with pytest.raises(ConfigError, match="divide one day"):
        SeasonalNaive().fit(np.ones(100), 7000)
    with pytest.raises(ConfigError, match="without any value"):
        fill_gaps_for_model([np.nan, np.nan])
    np.testing.assert_allclose(fill_gaps_for_model([np.nan, 2, np.nan, 4]), [2, 2, 3, 4])


def test_short_history_falls_back_to_a_model_that_fits() -> None:
    selection = select_model(np.full(30, 100.0), 3600)
    assert selection.name == "seasonal_naive" and selection.mape_pct == {}
    with pytest.raises(ConfigError, match="no forecast model"):
        select_model(np.full(5, 100.0), 3600)


def trace_of(series: np.ndarray) -> TraceSource:
    return TraceSource(["DE"], T0, 3600, series[None, :], label="trace test.csv")


def test_forecast_readings_from_a_trace() -> None:
    series = structured_series(days=50)
    trace = trace_of(series)
    start = T0 + timedelta(days=45, minutes=10)
    readings = forecast_readings(trace, "DE", start, timedelta(hours=6))
    assert len(readings) == 6
    assert readings[0].time == T0 + timedelta(days=45, hours=1)
    assert all(r.kind is Kind.FORECAST for r in readings)
    assert "forecast (" in readings[0].source and "test.csv" in readings[0].source
    actual = series[45 * 24 + 1 : 45 * 24 + 7]
    predicted = np.array([r.intensity_g_per_kwh for r in readings])
    assert np.mean(np.abs(predicted - actual) / actual) < 0.2
    via_source = trace.forecast("DE", start, timedelta(hours=6))
    assert [r.intensity_g_per_kwh for r in via_source] == list(predicted)
    fixed = forecast_readings(trace, "DE", start, timedelta(hours=3), model="seasonal_naive")
    assert [r.intensity_g_per_kwh for r in fixed] == list(series[44 * 24 + 1 : 44 * 24 + 4])
    with pytest.raises(ConfigError, match="unknown forecast model"):
        forecast_readings(trace, "DE", start, model="oracle")


def test_forecast_survives_gaps_but_needs_history() -> None:
    series = structured_series(days=30)
    series[20 * 24 : 21 * 24] = np.nan
    trace = trace_of(series)
    readings = trace.forecast("DE", T0 + timedelta(days=25), timedelta(hours=24))
    assert len(readings) == 24
    with pytest.raises(ProviderError, match="needs two days"):
        trace.forecast("DE", T0 + timedelta(hours=30))


def test_chosen_model_beats_seasonal_naive_on_real_data() -> None:
    trace = load_trace(shared_file("carbon/ci_2022_hourly_lca_123zones.csv"), zones=["DE", "GB"])
    for zone in trace.zones():
        series = trace.series(zone)
        selection = select_model(series[: 120 * 24], 3600, n_origins=12)
        origins = list(range(120 * 24, 160 * 24, 25))
        chosen = backtest(series, selection.factory, origins, 24, 3600, window_steps=35 * 24)
        naive = backtest(series, SeasonalNaive, origins, 24, 3600, window_steps=35 * 24)
        assert np.nanmean(chosen) < np.nanmean(naive), zone
