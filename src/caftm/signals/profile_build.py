"""Build a profile set (typical-year statistics per zone) from hourly traces.

``caftm profiles build --from FILE…`` and ``scripts/build_profiles.py`` (the embedded set) both
call :func:`build_profile_set`. For each zone it takes one whole UTC year of hourly values, with
no gap, and estimates what :class:`~caftm.signals.profiles.ZoneProfile` holds: the hour-of-day x
month mean, a day-level and an hour-level AR(1) part, and the hour-residual scale calibrated so
generated years have the real mean daily amplitude. Only statistics are written, never the
series. The result is deterministic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from caftm.errors import DataError
from caftm.signals.profiles import ZoneProfile, daily_amplitude, generate_year
from caftm.signals.traces import TraceSource

__all__ = ["build_profile_set", "complete_years", "estimate"]

HOUR_S = 3600
CALIBRATION_SEEDS = (11, 12, 13)
#: The document format written (read by :func:`caftm.signals.profiles.parse_profile_set`).
FORMAT = 1


def _lag1(series: npt.NDArray[np.float64]) -> float:
    a, b = series[:-1], series[1:]
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _year_hours(year: int) -> tuple[int, int]:
    """Epoch seconds of the first hour of the UTC ``year`` and its number of hours."""
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    return start, (end - start) // HOUR_S


def _year_values(trace: TraceSource, zone: str, year: int) -> npt.NDArray[np.float64] | None:
    """The zone's hourly values over the whole UTC ``year``, or None when any hour is missing."""
    start_s, hours = _year_hours(year)
    times = start_s + HOUR_S * np.arange(hours, dtype=np.int64)
    values = trace.lookup(np.full(hours, trace.zone_index(zone)), times, method="hold")
    return None if np.isnan(values).any() else values


def complete_years(trace: TraceSource, zone: str) -> list[int]:
    """The UTC years the trace holds completely (every hour, no gap) for ``zone``."""
    if trace.step_s != HOUR_S:
        return []
    years = range(trace.start.year, trace.end.year + 1)
    return [y for y in years if _year_values(trace, zone, y) is not None]


def estimate(zone: str, hourly: npt.NDArray[np.float64], year: int) -> ZoneProfile:
    """Statistics of one zone from the whole UTC ``year`` of hourly values."""
    start_s, hours = _year_hours(year)
    day_starts = (start_s + 86_400 * np.arange(hours // 24)).astype("datetime64[s]")
    day_months = (day_starts.astype("datetime64[M]").astype(np.int64) % 12).astype(np.intp)
    days = hourly[: hours // 24 * 24].reshape(-1, 24)
    mean = np.vstack([days[day_months == m].mean(axis=0) for m in range(12)])
    resid = days - mean[day_months]
    day_dev = resid.mean(axis=1)
    within = resid - day_dev[:, None]
    profile = ZoneProfile(
        zone=zone,
        hour_month_mean=mean,
        day_sigma=np.array([day_dev[day_months == m].std() for m in range(12)]),
        day_phi=float(np.clip(_lag1(day_dev), 0.0, 0.99)),
        hour_sigma=np.array([within[day_months == m].std() for m in range(12)]),
        hour_phi=float(np.clip(_lag1(within.ravel()), 0.0, 0.995)),
        noise_scale=1.0,
        floor=float(hourly.min()),
        ceiling=float(hourly.max()),
        yearly_mean=float(hourly.mean()),
        daily_amplitude=daily_amplitude(hourly),
    )
    return calibrate(profile, year)


def _generated_amplitude(profile: ZoneProfile, year: int, scale: float) -> float:
    return float(
        np.mean(
            [
                daily_amplitude(generate_year(profile, year, seed, noise_scale=scale))
                for seed in CALIBRATION_SEEDS
            ]
        )
    )


def calibrate(profile: ZoneProfile, year: int) -> ZoneProfile:
    """Find the hour-residual scale whose generated years match the real daily amplitude."""
    target = profile.daily_amplitude
    low, high = 0.0, 1.0
    while _generated_amplitude(profile, year, high) < target and high < 64:
        low, high = high, high * 2
    for _ in range(22):
        middle = (low + high) / 2
        if _generated_amplitude(profile, year, middle) < target:
            low = middle
        else:
            high = middle
    return dataclasses.replace(profile, noise_scale=(low + high) / 2)


def build_profile_set(
    trace: TraceSource,
    *,
    zones: Sequence[str] | None = None,
    year: int | None = None,
    attribution: str = "",
    description: str = "",
) -> tuple[dict[str, Any], list[str]]:
    """The profile-set document for ``zones`` (default: every zone) of ``trace``, and notes on
    the zones left out.

    Each zone uses ``year`` (default: the latest UTC year the trace holds completely for it).

    Raises:
        DataError: the trace is not hourly, or no zone has a complete year (``year`` when given).
    """
    if trace.step_s != HOUR_S:
        raise DataError(
            f"{trace.label}: a profile needs hourly values; this trace steps {trace.step_s} s"
        )
    names = list(zones) if zones is not None else trace.zones()
    stats: dict[str, Any] = {}
    used_years: set[int] = set()
    skipped: list[str] = []
    for zone in names:
        years = complete_years(trace, zone)
        chosen = year if year is not None and year in years else None
        if year is None and years:
            chosen = years[-1]
        values = None if chosen is None else _year_values(trace, zone, chosen)
        if chosen is None or values is None:
            want = f"year {year}" if year is not None else "any UTC year"
            skipped.append(f"zone {zone}: no complete {want} of hourly values (gaps or too short)")
            continue
        stats[zone] = estimate(zone, values, chosen).to_dict()
        used_years.add(chosen)
    if not stats:
        raise DataError(
            f"{trace.label}: no zone has a complete UTC year of hourly values without gaps; "
            + "; ".join(skipped[:3])
        )
    if len(used_years) > 1:
        skipped.append(
            f"zones use different years ({', '.join(map(str, sorted(used_years)))}); "
            "the set records the latest; pass --year to use one"
        )
    document = {
        "format": FORMAT,
        "description": description
        or "Typical-year statistics of hourly carbon intensity (gCO2eq/kWh, UTC), built by "
        "'caftm profiles build'; synthetic traces are generated from them.",
        "attribution": attribution or f"built from {trace.label}",
        "year": max(used_years),
        "basis": trace.basis.value,
        "zones": stats,
    }
    return document, skipped
