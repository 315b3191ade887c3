"""Forecasting carbon intensity for sources that give no forecast of their own.

Models (all implement :class:`Forecaster`; ``fit`` takes a regular series, oldest first):

* ``seasonal_naive`` — tomorrow repeats the last day.
* ``profile_anomaly`` — the mean daily shape of the last week plus today's deviation from it,
  decaying with the deviation's own hour-to-hour autocorrelation.
* ``regression`` — direct multi-horizon least squares: for each lead time, the value from a
  small ridge regression on the last value, the last same-hour value, the same-hour mean of
  the last week, the last day's mean and the value a week before, fitted on recent weeks.
* ``blend`` — the mean of ``regression`` and ``profile_anomaly``.

:func:`select_model` back-tests the candidates on rolling origins at the end of the history
and picks the lowest mean absolute percentage error; :func:`forecast_readings` turns that
into :class:`~caftm.signals.base.Reading` objects of kind FORECAST for any source.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, Self

import numpy as np
import numpy.typing as npt

from caftm.errors import ConfigError, ProviderError
from caftm.signals.base import (
    MAX_PLAUSIBLE_G_PER_KWH,
    IntensitySource,
    Kind,
    Reading,
    as_utc,
)

__all__ = [
    "CANDIDATES",
    "Blend",
    "Forecaster",
    "ProfileAnomaly",
    "Regression",
    "SeasonalNaive",
    "Selection",
    "backtest",
    "fill_gaps_for_model",
    "forecast_readings",
    "select_model",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
DAY_S = 86_400


class Forecaster(Protocol):
    """A point forecaster of one regular series."""

    name: str

    def fit(self, history: FloatArray, step_s: int) -> Self:
        """Learn from ``history`` (finite values, oldest first, ``step_s`` apart)."""
        ...

    def predict(self, horizon_steps: int) -> FloatArray:
        """Values for the ``horizon_steps`` steps right after the history."""
        ...


def _season(step_s: int) -> int:
    if step_s <= 0 or DAY_S % step_s:
        raise ConfigError(f"forecast step must divide one day (86400 s), got {step_s} s")
    return DAY_S // step_s


def _need(history: FloatArray, steps: int, model: str) -> FloatArray:
    array = np.asarray(history, dtype=np.float64)
    if array.ndim != 1 or array.size < steps:
        raise ConfigError(f"{model} needs at least {steps} steps of history, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise ConfigError(f"{model} needs finite history; fill gaps first (fill_gaps_for_model)")
    return array


class SeasonalNaive:
    """Each step repeats the value one day earlier."""

    name = "seasonal_naive"

    def __init__(self) -> None:
        self._last_day: FloatArray = np.empty(0)

    def fit(self, history: FloatArray, step_s: int) -> Self:
        season = _season(step_s)
        self._last_day = _need(history, season, self.name)[-season:].copy()
        return self

    def predict(self, horizon_steps: int) -> FloatArray:
        season = self._last_day.size
        out: FloatArray = self._last_day[np.arange(horizon_steps) % season]
        return out


class ProfileAnomaly:
    """Mean daily shape of the last ``days`` days plus the latest deviation, decaying.

    Args:
        days: days averaged into the daily shape.
    """

    name = "profile_anomaly"

    def __init__(self, days: int = 7) -> None:
        self.days = days
        self._shape: FloatArray = np.empty(0)
        self._anomaly = 0.0
        self._rho = 0.0

    def fit(self, history: FloatArray, step_s: int) -> Self:
        season = _season(step_s)
        days = min(self.days, max(1, np.asarray(history).size // season))
        recent = _need(history, season, self.name)[-days * season :]
        self._shape = recent.reshape(days, season).mean(axis=0)
        anomalies = recent - np.tile(self._shape, days)
        a, b = anomalies[:-1], anomalies[1:]
        denominator = float(np.dot(a, a))
        self._rho = float(np.clip(np.dot(a, b) / denominator, 0.0, 0.999)) if denominator else 0.0
        self._anomaly = float(anomalies[-1])
        return self

    def predict(self, horizon_steps: int) -> FloatArray:
        season = self._shape.size
        lead = np.arange(1, horizon_steps + 1)
        out: FloatArray = self._shape[(lead - 1) % season] + self._anomaly * self._rho**lead
        return out


class Regression:
    """Direct per-lead ridge regression on recent level and daily/weekly shape.

    For each lead ``h`` the value at ``t + h`` is regressed on: the last value ``y[t]``; the
    last value at the same hour of day; the same-hour mean of the last ``week_days`` days, at
    that hour and at ``t``'s hour; the last day's mean; and the value one week before
    ``t + h`` (``week_days`` days earlier). All leads are fitted at once
    (batched normal equations) on the origins of the last ``train_days`` days.

    Args:
        train_days: days of origins the regression is fitted on (the most recent).
        week_days: days averaged into the same-hour mean features.
        ridge: ridge strength relative to the mean feature variance (intercept not penalised).
    """

    name = "regression"

    def __init__(self, train_days: int = 28, week_days: int = 7, ridge: float = 1e-3) -> None:
        self.train_days = train_days
        self.week_days = week_days
        self.ridge = ridge
        self._history: FloatArray = np.empty(0)
        self._season = 24
        self._same_hour_mean: FloatArray = np.empty(0)
        self._day_mean: FloatArray = np.empty(0)

    def fit(self, history: FloatArray, step_s: int) -> Self:
        season = self._season = _season(step_s)
        y = self._history = _need(history, (self.week_days + 3) * season, self.name)
        span = (self.week_days - 1) * season
        weekly = np.full(y.size, np.nan)
        weekly[span:] = np.mean(
            [y[span - k * season : y.size - k * season] for k in range(self.week_days)], axis=0
        )
        self._same_hour_mean = weekly
        cumsum = np.concatenate(([0.0], np.cumsum(y)))
        daily = np.full(y.size, np.nan)
        daily[season - 1 :] = (cumsum[season:] - cumsum[:-season]) / season
        self._day_mean = daily
        return self

    def _features(self, origins: npt.NDArray[np.intp], leads: npt.NDArray[np.intp]) -> FloatArray:
        """Features ``(leads, origins, 6)`` for forecasting ``origin + lead`` from ``origin``."""
        y, season = self._history, self._season
        same_hour = origins[None, :] + leads[:, None] - season * -(-leads[:, None] // season)
        shape = (leads.size, origins.size)
        return np.stack(
            [
                np.broadcast_to(y[origins], shape),
                y[same_hour],
                self._same_hour_mean[same_hour],
                np.broadcast_to(self._same_hour_mean[origins], shape),
                np.broadcast_to(self._day_mean[origins], shape),
                y[origins[None, :] + leads[:, None] - self.week_days * season],
            ],
            axis=-1,
        )

    def predict(self, horizon_steps: int) -> FloatArray:
        y, season = self._history, self._season
        last = y.size - 1
        leads = np.arange(1, horizon_steps + 1)
        query = self._features(np.array([last]), leads)[:, 0, :]
        first = self.week_days * season  # every feature defined from here on
        latest = last - horizon_steps
        first = max(first, latest - self.train_days * season)
        if latest - first < 2 * season:  # too short to fit: the same-hour weekly mean
            fallback: FloatArray = query[:, 2].copy()
            return fallback
        origins = np.arange(first, latest + 1)
        x = self._features(origins, leads)
        target = y[origins[None, :] + leads[:, None]]
        x_mean = x.mean(axis=1, keepdims=True)
        y_mean = target.mean(axis=1, keepdims=True)
        centred = x - x_mean
        gram = np.matmul(centred.transpose(0, 2, 1), centred)
        scale = np.trace(gram, axis1=1, axis2=2) / gram.shape[-1]
        gram += (self.ridge * np.maximum(scale, 1e-12))[:, None, None] * np.eye(gram.shape[-1])
        rhs = np.matmul(centred.transpose(0, 2, 1), (target - y_mean)[..., None])[..., 0]
        coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
        out: FloatArray = y_mean[:, 0] + np.einsum("hp,hp->h", query - x_mean[:, 0, :], coef)
        return out


class Blend:
    """The mean of :class:`Regression` and :class:`ProfileAnomaly` forecasts."""

    name = "blend"

    def __init__(self) -> None:
        self._members: list[Forecaster] = [Regression(), ProfileAnomaly()]

    def fit(self, history: FloatArray, step_s: int) -> Self:
        for member in self._members:
            member.fit(history, step_s)
        return self

    def predict(self, horizon_steps: int) -> FloatArray:
        out: FloatArray = np.mean([m.predict(horizon_steps) for m in self._members], axis=0)
        return out


#: Candidate models by name, each a factory of a fresh forecaster.
CANDIDATES: Mapping[str, Callable[[], Forecaster]] = {
    "seasonal_naive": SeasonalNaive,
    "profile_anomaly": ProfileAnomaly,
    "regression": Regression,
    "blend": Blend,
}


def fill_gaps_for_model(values: npt.ArrayLike) -> FloatArray:
    """Linearly interpolate NaN gaps (edges held) — only to feed a model, never to report.

    Raises:
        ConfigError: no finite value at all.
    """
    array = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(array)
    if not finite.any():
        raise ConfigError("cannot forecast from a series without any value")
    if finite.all():
        return array.copy()
    index = np.arange(array.size)
    return np.interp(index, index[finite], array[finite])


def backtest(
    series: FloatArray,
    factory: Callable[[], Forecaster],
    origins: Sequence[int],
    horizon_steps: int,
    step_s: int,
    *,
    window_steps: int,
) -> FloatArray:
    """Absolute percentage errors, ``(len(origins), horizon_steps)``, of rolling-origin forecasts.

    At origin ``o`` the model is fitted on ``series[o - window_steps : o]`` and compared with
    ``series[o : o + horizon_steps]``; NaN where the actual value is missing or zero.
    """
    errors = np.full((len(origins), horizon_steps), np.nan)
    for row, origin in enumerate(origins):
        history = fill_gaps_for_model(series[max(0, origin - window_steps) : origin])
        actual = series[origin : origin + horizon_steps]
        predicted = factory().fit(history, step_s).predict(horizon_steps)[: actual.size]
        with np.errstate(divide="ignore", invalid="ignore"):
            ape = np.abs(predicted - actual) / np.abs(actual) * 100.0
        ape[~np.isfinite(ape)] = np.nan
        errors[row, : actual.size] = ape
    return errors


@dataclass(frozen=True)
class Selection:
    """Outcome of :func:`select_model`: the winner and every candidate's back-test MAPE (%)."""

    name: str
    factory: Callable[[], Forecaster]
    mape_pct: dict[str, float]


def select_model(
    history: npt.ArrayLike,
    step_s: int = 3600,
    *,
    candidates: Mapping[str, Callable[[], Forecaster]] = CANDIDATES,
    horizon_steps: int = 24,
    n_origins: int = 10,
    origin_spacing_steps: int | None = None,
    window_steps: int | None = None,
) -> Selection:
    """Pick the candidate with the lowest back-tested MAPE over ``horizon_steps``.

    Origins are spaced ``origin_spacing_steps`` apart (default: a day plus one step, so they
    cycle through the hours) and end where the last forecast just fits in ``history``.
    With too little history for a back-test the first candidate that can fit wins.

    Raises:
        ConfigError: no candidates, or no candidate can be fitted to ``history``.
    """
    if not candidates:
        raise ConfigError("select_model needs at least one candidate")
    series = fill_gaps_for_model(history)
    season = _season(step_s)
    spacing = origin_spacing_steps or season + 1
    window = window_steps or 35 * season
    last_origin = series.size - horizon_steps
    origins = [o for o in range(last_origin, 0, -spacing)][:n_origins][::-1]
    scores: dict[str, float] = {}
    for name, factory in candidates.items():
        usable = [o for o in origins if o >= min(window, 10 * season)]
        if not usable:
            continue
        try:
            errors = backtest(series, factory, usable, horizon_steps, step_s, window_steps=window)
        except ConfigError:
            continue
        if np.isfinite(errors).any():
            scores[name] = float(np.nanmean(errors))
    if scores:
        best = min(scores, key=scores.__getitem__)
        return Selection(best, candidates[best], scores)
    for name, factory in candidates.items():
        try:
            factory().fit(series, step_s)
        except ConfigError:
            continue
        return Selection(name, factory, {})
    raise ConfigError(f"no forecast model can use {series.size} steps of history")


def forecast_readings(
    source: IntensitySource,
    zone: str,
    start: datetime,
    horizon: timedelta = timedelta(hours=24),
    *,
    step_s: int = 3600,
    history_days: int = 35,
    model: str | None = None,
) -> list[Reading]:
    """Forecast ``zone`` from ``source``'s own recent history (kind FORECAST).

    Takes ``history_days`` of history before ``start`` from ``source.history``, picks a model
    by back-testing (or uses ``model``), and forecasts each step from ``start`` (rounded up to
    the step) over ``horizon``.

    Raises:
        ConfigError: unknown ``model`` or naive ``start``.
        ProviderError: less than two days of history before ``start``.
    """
    season = _season(step_s)
    first_s = math.ceil(as_utc(start, what="forecast start").timestamp() / step_s) * step_s
    first = datetime.fromtimestamp(first_s, UTC)
    readings = source.history(zone, first - timedelta(days=history_days), first)
    n_steps = history_days * season
    grid = np.full(n_steps, np.nan)
    for reading in readings:
        index = n_steps - int((first_s - reading.time.timestamp()) // step_s)
        if 0 <= index < n_steps:
            grid[index] = reading.intensity_g_per_kwh
    if np.isfinite(grid).sum() < 2 * season:
        raise ProviderError(
            f"{source.name} has {np.isfinite(grid).sum()} value(s) for {zone} in the "
            f"{history_days} days before {first.isoformat()}; a forecast needs two days"
        )
    valid = np.flatnonzero(np.isfinite(grid))
    series = fill_gaps_for_model(grid[valid[0] :])
    horizon_steps = max(1, math.ceil(horizon.total_seconds() / step_s))
    if model is not None:
        if model not in CANDIDATES:
            raise ConfigError(f"unknown forecast model {model!r}; choose from {list(CANDIDATES)}")
        chosen = model
    else:
        chosen = select_model(series, step_s, horizon_steps=min(horizon_steps, season)).name
    try:
        predicted = CANDIDATES[chosen]().fit(series, step_s).predict(horizon_steps)
    except ConfigError:
        chosen = "seasonal_naive"
        predicted = SeasonalNaive().fit(series, step_s).predict(horizon_steps)
    predicted = np.clip(predicted, 0.0, MAX_PLAUSIBLE_G_PER_KWH)
    basis = readings[0].basis  # not empty: two days of values were found
    label = f"{source.name} forecast ({chosen} model on {readings[0].source})"
    logger.debug("forecast %s from %s with %s", zone, first.isoformat(), chosen)
    return [
        Reading(zone, first + timedelta(seconds=step_s * i), float(v), basis, Kind.FORECAST, label)
        for i, v in enumerate(predicted)
    ]
