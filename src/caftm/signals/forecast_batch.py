"""The forecasters of :mod:`caftm.signals.forecast` at many origins of one series at once.

A replay asks for a forecast at every hour of a year; fitting each one separately costs about a
millisecond. :func:`forecast_origins` gives, for each origin ``o``, what
``CANDIDATES[model]().fit(series[max(0, o - window_steps):o], step_s).predict(horizon)`` gives
(up to floating-point rounding, ~1e-9 relative), with every model's fit vectorised over origins:
the regression's normal equations come from rolling sums of the features, which are the same
whichever window they are seen through. An origin whose history is too short for the model gets
a row of NaN (where the model itself would raise :class:`~caftm.errors.ConfigError`).

Units: whatever the series holds (gCO2eq/kWh here); steps of ``step_s`` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from caftm.errors import ConfigError
from caftm.signals.forecast import CANDIDATES, ProfileAnomaly, Regression

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

__all__ = ["forecast_origins"]


def forecast_origins(
    series: npt.ArrayLike,
    step_s: int,
    origins: Sequence[int] | IntArray,
    *,
    model: str,
    window_steps: int,
    horizon_steps: int,
) -> FloatArray:
    """Forecasts ``(len(origins), horizon_steps)`` of ``model`` fitted at each origin.

    Args:
        series: finite values, oldest first, ``step_s`` apart.
        origins: indices into ``series``; the forecast at ``o`` sees ``series[:o]`` only (its last
            ``window_steps``).

    Raises:
        ConfigError: unknown model, a non-finite series, or an origin outside it.
    """
    if model not in CANDIDATES:
        raise ConfigError(f"unknown forecast model {model!r}; choose from {list(CANDIDATES)}")
    y = np.asarray(series, dtype=np.float64)
    if y.ndim != 1 or not np.all(np.isfinite(y)):
        raise ConfigError("forecast_origins needs a finite one-dimensional series")
    at = np.asarray(origins, dtype=np.intp)
    if at.size and (at.min() < 0 or at.max() > y.size):
        raise ConfigError(f"forecast origins must lie within the series' {y.size} steps")
    if 86_400 % step_s:
        raise ConfigError(f"forecast step must divide one day (86400 s), got {step_s} s")
    season = 86_400 // step_s
    if model == "seasonal_naive":
        return _seasonal_naive(y, at, season, window_steps, horizon_steps)
    if model == "profile_anomaly":
        return _profile_anomaly(y, at, season, step_s, window_steps, horizon_steps)
    if model == "regression":
        return _regression(y, at, season, step_s, window_steps, horizon_steps)
    regression = _regression(y, at, season, step_s, window_steps, horizon_steps)
    profile = _profile_anomaly(y, at, season, step_s, window_steps, horizon_steps)
    blend: FloatArray = (regression + profile) / 2.0  # Blend: the mean of the two
    return blend


def _lengths(at: IntArray, window_steps: int) -> IntArray:
    """History length seen at each origin."""
    return np.minimum(at, window_steps)


def _seasonal_naive(
    y: FloatArray, at: IntArray, season: int, window_steps: int, horizon: int
) -> FloatArray:
    out = np.full((at.size, horizon), np.nan)
    ok = _lengths(at, window_steps) >= season
    lead = np.arange(horizon) % season
    rows = at[ok]
    out[ok] = y[(rows - season)[:, None] + lead[None, :]]
    return out


def _profile_anomaly(
    y: FloatArray, at: IntArray, season: int, step_s: int, window_steps: int, horizon: int
) -> FloatArray:
    days_max = ProfileAnomaly().days
    out = np.full((at.size, horizon), np.nan)
    n = _lengths(at, window_steps)
    full = n >= days_max * season
    for i in np.flatnonzero(~full & (n >= season)):  # the first days: fewer days to average
        history = y[at[i] - n[i] : at[i]]
        out[i] = ProfileAnomaly().fit(history, step_s).predict(horizon)
    rows = at[full]
    if rows.size:
        span = days_max * season
        recent = y[(rows - span)[:, None] + np.arange(span)[None, :]]  # (origins, span)
        shape = recent.reshape(rows.size, days_max, season).mean(axis=1)
        anomalies = recent - np.tile(shape, days_max)
        a, b = anomalies[:, :-1], anomalies[:, 1:]
        denominator = np.einsum("ij,ij->i", a, a)
        with np.errstate(divide="ignore", invalid="ignore"):
            rho = np.where(
                denominator > 0, np.clip(np.einsum("ij,ij->i", a, b) / denominator, 0.0, 0.999), 0
            )
        lead = np.arange(1, horizon + 1)
        out[full] = (
            shape[:, (lead - 1) % season] + anomalies[:, -1:] * rho[:, None] ** lead[None, :]
        )
    return out


def _regression(
    y: FloatArray, at: IntArray, season: int, step_s: int, window_steps: int, horizon: int
) -> FloatArray:
    spec = Regression()
    week, train_days, ridge = spec.week_days, spec.train_days, spec.ridge
    out = np.full((at.size, horizon), np.nan)
    n = _lengths(at, window_steps)
    fits = n >= (week + 3) * season  # Regression.fit refuses less
    if not fits.any():
        return out
    shift = float(np.mean(y))  # the fit is shift-invariant; centring keeps the sums small
    z = y - shift
    size = z.size
    span = (week - 1) * season
    weekly = np.full(size, np.nan)
    if size > span:
        weekly[span:] = np.mean([z[span - k * season : size - k * season] for k in range(week)], 0)
    cumsum = np.concatenate(([0.0], np.cumsum(z)))
    daily = np.full(size, np.nan)
    daily[season - 1 :] = (cumsum[season:] - cumsum[:-season]) / season
    leads = np.arange(1, horizon + 1)
    back = season * -(-leads // season)  # same hour, at or before the origin

    def features(origins: IntArray) -> FloatArray:
        """``(leads, origins, 6)``, as :meth:`Regression._features` on the whole series."""
        o = origins[None, :]
        same = o + leads[:, None] - back[:, None]
        shape = (horizon, origins.size)
        return np.stack(
            [
                np.broadcast_to(z[origins], shape),
                z[same],
                weekly[same],
                np.broadcast_to(weekly[origins], shape),
                np.broadcast_to(daily[origins], shape),
                z[np.maximum(o + leads[:, None] - week * season, 0)],
            ],
            axis=-1,
        )

    # training origins of the forecast at `a` (absolute): [w0 + first, w0 + latest]
    rows = np.flatnonzero(fits)
    a = at[rows]
    w0 = a - n[rows]
    last = n[rows] - 1
    latest = last - horizon
    first = np.maximum(week * season, latest - train_days * season)
    query = features(a - 1)  # (leads, origins, 6)
    short = latest - first < 2 * season
    out[rows[short]] = query[:, short, 2].T + shift
    rows, a, w0, first, latest, query = (
        rows[~short],
        a[~short],
        w0[~short],
        first[~short],
        latest[~short],
        query[:, ~short, :],
    )
    if not rows.size:
        return out
    lo, hi = w0 + first, w0 + latest  # inclusive
    base = int(lo.min())
    span_all = np.arange(base, int(hi.max()) + 1)
    x = features(span_all)  # (leads, origins, 6)
    target = z[span_all[None, :] + leads[:, None]]  # (leads, origins)
    eye = np.eye(6)
    for h in range(horizon):  # one lead at a time: (origins, 8, 8) sums stay small
        xa = np.concatenate([x[h], target[h][:, None], np.ones((span_all.size, 1))], axis=1)
        outer = xa[:, :, None] * xa[:, None, :]
        sums = np.concatenate([np.zeros((1, 8, 8)), np.cumsum(outer, axis=0)])
        block = sums[hi - base + 1] - sums[lo - base]  # (origins, 8, 8)
        count = block[:, 7, 7]
        mean = block[:, 7, :7] / count[:, None]  # the features' means, then the target's
        centred = block[:, :7, :7] - count[:, None, None] * mean[:, :, None] * mean[:, None, :]
        gram = centred[:, :6, :6]
        scale = np.trace(gram, axis1=-2, axis2=-1) / 6.0
        gram = gram + (ridge * np.maximum(scale, 1e-12))[:, None, None] * eye
        coef = np.linalg.solve(gram, centred[:, :6, 6:7])[:, :, 0]
        predicted = mean[:, 6] + np.einsum("op,op->o", query[h] - mean[:, :6], coef)
        out[rows, h] = predicted + shift
    return out
