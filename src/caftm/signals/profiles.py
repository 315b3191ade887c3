"""Embedded typical-year profiles: the default signal, needing no key and no network.

Shipped statistics (``data/profiles_2022.json``, derived from Electricity Maps 2022 hourly
lifecycle data by ``scripts/build_profiles.py``; ODbL, see ``data/NOTICE.md``) hold per zone:
the hour-of-day x month mean in UTC, a day-level AR(1) deviation (std per month, lag-1
autocorrelation) and an hour-level AR(1) residual (std per month, autocorrelation, and a
scale calibrated so generated days have the real mean daily amplitude).

:class:`ProfileSource` generates a synthetic, seeded trace for any UTC year from them:

    x(d, h) = mean[month, h] + day_deviation(d) + hour_residual(d, h)

clipped to the zone's observed range and rescaled so every month has the profile's mean.
The same seed, zone and year always give the same values. Every reading says it is
synthetic (kind SYNTHETIC, or FORECAST for forecasts).

The forecast starts from the current synthetic value: the expectation plus today's deviation
from it, fading as the model's day- and hour-level AR(1) parts do (the conditional expectation
of the model given the current deviation). On generated years this cuts the 1 h error to about
a quarter of the expectation's and stays below it to 24 h.
"""

from __future__ import annotations

import functools
import json
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from caftm.errors import ConfigError, DataError
from caftm.signals.base import (
    MAX_PLAUSIBLE_G_PER_KWH,
    Basis,
    IntensitySource,
    Kind,
    Reading,
    as_utc,
    forecast_start,
    utcnow,
)
from caftm.signals.traces import TraceSource

__all__ = [
    "PROFILE_SOURCE_TEXT",
    "ProfileSet",
    "ProfileSource",
    "ZoneProfile",
    "generate_year",
    "load_profile_set",
    "load_profiles",
    "parse_profile_set",
    "profile_basis",
    "profile_mean",
    "profile_year",
    "shipped_zones",
]

#: Recorded in the ``source`` of every reading built on the embedded profiles.
PROFILE_SOURCE_TEXT = "typical-year profile (synthetic, Electricity Maps 2022 statistics)"
PROFILE_FILE = "profiles_2022.json"
HOUR_S = 3600
DAY_S = 86_400
_BURN_IN = 64

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ZoneProfile:
    """Statistics of one zone (gCO2eq/kWh; months 0 = January; hours UTC)."""

    zone: str
    hour_month_mean: FloatArray  # (12, 24)
    day_sigma: FloatArray  # (12,) std of the daily-mean deviation
    day_phi: float  # lag-1 autocorrelation of the daily-mean deviation, per day
    hour_sigma: FloatArray  # (12,) std of the hourly residual within a day
    hour_phi: float  # lag-1 autocorrelation of the hourly residual, per hour
    noise_scale: float  # calibration of hour_sigma for the real mean daily amplitude
    floor: float  # lowest value observed
    ceiling: float  # highest value observed
    yearly_mean: float  # mean of the source year
    daily_amplitude: float  # mean over days of (max - min) within the UTC day, source year

    @classmethod
    def from_dict(cls, zone: str, raw: dict[str, Any]) -> ZoneProfile:
        """Build from the JSON form written by ``scripts/build_profiles.py``."""
        try:
            profile = cls(
                zone=zone,
                hour_month_mean=np.asarray(raw["hour_month_mean"], dtype=np.float64),
                day_sigma=np.asarray(raw["day_sigma"], dtype=np.float64),
                day_phi=float(raw["day_phi"]),
                hour_sigma=np.asarray(raw["hour_sigma"], dtype=np.float64),
                hour_phi=float(raw["hour_phi"]),
                noise_scale=float(raw["noise_scale"]),
                floor=float(raw["floor"]),
                ceiling=float(raw["ceiling"]),
                yearly_mean=float(raw["yearly_mean"]),
                daily_amplitude=float(raw["daily_amplitude"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"profile statistics for zone {zone} are malformed: {e!r}") from e
        if profile.hour_month_mean.shape != (12, 24) or profile.day_sigma.shape != (12,):
            raise DataError(f"profile statistics for zone {zone} have the wrong shape")
        return profile

    def to_dict(self) -> dict[str, Any]:
        """JSON form (values rounded to what matters)."""
        return {
            "hour_month_mean": np.round(self.hour_month_mean, 2).tolist(),
            "day_sigma": np.round(self.day_sigma, 3).tolist(),
            "day_phi": round(self.day_phi, 4),
            "hour_sigma": np.round(self.hour_sigma, 3).tolist(),
            "hour_phi": round(self.hour_phi, 4),
            "noise_scale": round(self.noise_scale, 4),
            "floor": round(self.floor, 2),
            "ceiling": round(self.ceiling, 2),
            "yearly_mean": round(self.yearly_mean, 2),
            "daily_amplitude": round(self.daily_amplitude, 2),
        }

    def expectation(self, times_s: npt.ArrayLike) -> FloatArray:
        """Expected intensity at epoch seconds ``times_s`` (the hour-of-day x month mean)."""
        months, hours = _month_hour(np.asarray(times_s, dtype=np.int64))
        values: FloatArray = self.hour_month_mean[months, hours]
        return values

    def deviation_memory(self, anchor_s: int, times_s: npt.ArrayLike) -> FloatArray:
        """How much of the deviation from the expectation at epoch second ``anchor_s`` is
        expected to remain at ``times_s`` (≥ ``anchor_s``): the correlation of the model's
        deviations, its day part held within a UTC day and fading by ``day_phi`` per day,
        its hour part fading by ``hour_phi`` per hour, weighted by their variances."""
        times = np.asarray(times_s, dtype=np.int64)
        month = int(_month_hour(np.array([anchor_s], dtype=np.int64))[0][0])
        day_var = float(self.day_sigma[month]) ** 2
        hour_var = float(self.hour_sigma[month] * self.noise_scale) ** 2
        if day_var + hour_var <= 0.0:
            return np.zeros(times.shape, dtype=np.float64)
        lead_h = np.maximum(times - anchor_s, 0) // HOUR_S
        lead_days = np.maximum(times // DAY_S - anchor_s // DAY_S, 0)
        day_phi, hour_phi = _phi(self.day_phi), _phi(self.hour_phi)
        memory: FloatArray = (day_var * day_phi**lead_days + hour_var * hour_phi**lead_h) / (
            day_var + hour_var
        )
        return memory


def _phi(phi: float) -> float:
    """An autocorrelation as the generator uses it (stationary: below 1)."""
    return float(np.clip(phi, 0.0, 0.999))


def _month_hour(
    times_s: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    stamps = times_s.astype("datetime64[s]")
    months = (stamps.astype("datetime64[M]").astype(np.int64) % 12).astype(np.intp)
    hours = ((times_s // HOUR_S) % 24).astype(np.intp)
    return months, hours


def _ar1(rng: np.random.Generator, phi: float, n: int) -> FloatArray:
    """A unit-variance stationary AR(1) series of length ``n``."""
    from scipy.signal import lfilter  # imported here: scipy costs CLI start-up

    phi = _phi(phi)
    shocks = rng.standard_normal(n + _BURN_IN) * np.sqrt(1.0 - phi * phi)
    series: FloatArray = lfilter([1.0], [1.0, -phi], shocks)[_BURN_IN:]
    return series


def generate_year(
    profile: ZoneProfile, year: int, seed: int, *, noise_scale: float | None = None
) -> FloatArray:
    """Hourly synthetic intensities (gCO2eq/kWh) for the UTC ``year``, deterministic by seed.

    ``noise_scale`` overrides the calibrated hour-residual scale (used by the calibration).
    """
    scale = profile.noise_scale if noise_scale is None else noise_scale
    start = np.datetime64(f"{year:04d}-01-01T00", "h")
    n_hours = int((np.datetime64(f"{year + 1:04d}-01-01T00", "h") - start).astype(np.int64))
    times_s = (start.astype("datetime64[s]").astype(np.int64)) + HOUR_S * np.arange(n_hours)
    months, hours = _month_hour(times_s)
    rng = np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(profile.zone.encode()), year])
    n_days = n_hours // 24
    day_of_hour = np.arange(n_hours) // 24
    day_months = months[::24]
    day_dev = _ar1(rng, profile.day_phi, n_days) * profile.day_sigma[day_months]
    hour_res = _ar1(rng, profile.hour_phi, n_hours) * profile.hour_sigma[months] * scale
    values = profile.hour_month_mean[months, hours] + day_dev[day_of_hour] + hour_res
    low = max(profile.floor, 0.0)
    values = np.clip(values, low, min(profile.ceiling, MAX_PLAUSIBLE_G_PER_KWH))
    for month in range(12):
        in_month = months == month
        target = float(profile.hour_month_mean[month].mean())
        got = float(values[in_month].mean())
        if got > 0:
            values[in_month] *= target / got
    clipped: FloatArray = np.clip(values, 0.0, MAX_PLAUSIBLE_G_PER_KWH)
    return clipped


def daily_amplitude(hourly: npt.ArrayLike) -> float:
    """Mean over whole UTC days of (max - min), for an hourly series starting at 00:00 UTC."""
    array = np.asarray(hourly, dtype=np.float64)
    days = array[: array.size // 24 * 24].reshape(-1, 24)
    return float(np.mean(days.max(axis=1) - days.min(axis=1)))


@dataclass(frozen=True)
class ProfileSet:
    """A set of zone statistics and where they come from.

    Attributes:
        profiles: statistics by zone.
        year: the UTC year of the data they were derived from.
        basis: lifecycle or direct.
        attribution: the data's source and licence, as the file states it.
        path: the file read (None: the embedded set).
    """

    profiles: dict[str, ZoneProfile]
    year: int
    basis: Basis
    attribution: str
    path: str | None = None

    @property
    def source_text(self) -> str:
        """What each reading's ``source`` says."""
        if self.path is None:
            return PROFILE_SOURCE_TEXT
        return f"typical-year profile (synthetic, {self.year} statistics of {self.path})"


def parse_profile_set(raw: Any, *, where: str, path: str | None) -> ProfileSet:
    """A :class:`ProfileSet` from the JSON document ``raw`` (as ``caftm profiles build``
    writes it).

    Raises:
        DataError: not such a document (``where`` names it in the message).
    """
    try:
        zones = raw["zones"]
        year = int(raw.get("year", 0))
        basis = Basis(raw.get("basis", Basis.LIFECYCLE.value))
        attribution = str(raw.get("attribution", ""))
        if not isinstance(zones, dict) or not zones or not 1 <= year <= 9999:
            raise ValueError("needs a non-empty 'zones' mapping and a 'year'")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{where} is not a profile set ({e})") from e
    profiles = {zone: ZoneProfile.from_dict(zone, stats) for zone, stats in sorted(zones.items())}
    return ProfileSet(profiles, year, basis, attribution, path)


@functools.cache
def load_profile_set(path: str | None = None) -> ProfileSet:
    """The embedded profile set (``path`` None), or one written by ``caftm profiles build``.

    Raises:
        DataError: the file is missing, unreadable or not a profile set.
    """
    if path is None:
        where = f"embedded profile file caftm/signals/data/{PROFILE_FILE}"
        try:
            text = (
                resources.files("caftm.signals").joinpath("data", PROFILE_FILE).read_text("utf-8")
            )
            raw = json.loads(text)
        except (OSError, ValueError) as e:
            raise DataError(
                f"{where} is unreadable ({e}); reinstall caftm or rerun 'caftm profiles build'"
            ) from e
        return parse_profile_set(raw, where=where, path=None)
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(
            f"cannot read profile set {path}: {e}; write one with 'caftm profiles build'"
        ) from e
    return parse_profile_set(raw, where=f"profile set {path}", path=path)


def load_profiles() -> dict[str, ZoneProfile]:
    """The shipped statistics, by zone.

    Raises:
        DataError: the packaged file is missing or malformed (reinstall caftm).
    """
    return load_profile_set().profiles


def profile_year() -> int:
    """The UTC year of the data the embedded profiles were derived from."""
    return load_profile_set().year


def profile_basis() -> str:
    """The basis (lifecycle or direct) of the embedded profiles."""
    return load_profile_set().basis.value


def shipped_zones() -> list[str]:
    """Zones with an embedded profile, sorted."""
    return list(load_profiles())


def zone_profile(zone: str, profile_set: ProfileSet | None = None) -> ZoneProfile:
    """The statistics of ``zone`` in ``profile_set`` (default: the embedded set).

    Raises:
        ConfigError: no profile for ``zone`` (the message lists a few of the set's zones).
    """
    chosen = profile_set or load_profile_set()
    profiles = chosen.profiles
    if zone not in profiles:
        some = ", ".join(list(profiles)[:10])
        what = "embedded profile" if chosen.path is None else f"profile in {chosen.path}"
        raise ConfigError(
            f"no {what} for zone {zone!r}; {len(profiles)} zones there, e.g. {some} "
            "(see 'caftm zones')"
        )
    return profiles[zone]


def profile_mean(zone: str) -> float:
    """Yearly mean intensity of ``zone``'s profile, gCO2eq/kWh.

    Raises:
        ConfigError: unknown zone.
    """
    return float(zone_profile(zone).hour_month_mean.mean())


class ProfileSource(IntensitySource):
    """Synthetic intensities generated from the embedded typical-year profiles.

    Args:
        seed: seed of the generator; the same seed gives the same values for every
            zone, year and time.

    Every reading has kind SYNTHETIC (FORECAST for forecasts) and source
    :data:`PROFILE_SOURCE_TEXT`.
    """

    name = "profile"

    def __init__(self, seed: int = 0, *, path: str | Path | None = None) -> None:
        self.seed = int(seed)
        self.profile_set = load_profile_set(None if path is None else str(path))
        self._years: dict[tuple[str, int], FloatArray] = {}

    def zones(self) -> list[str]:
        """Zones of the profile set."""
        return list(self.profile_set.profiles)

    def year_values(self, zone: str, year: int) -> FloatArray:
        """The generated hourly values of ``zone`` for the UTC ``year`` (cached)."""
        key = (zone, year)
        if key not in self._years:
            if len(self._years) > 256:
                self._years.clear()
            self._years[key] = generate_year(zone_profile(zone, self.profile_set), year, self.seed)
        return self._years[key]

    def values_at(self, zone: str, times_s: npt.ArrayLike) -> FloatArray:
        """Generated values at epoch seconds ``times_s`` (step-hold per UTC hour)."""
        seconds = np.asarray(times_s, dtype=np.int64)
        stamps = seconds.astype("datetime64[s]")
        years = stamps.astype("datetime64[Y]").astype(np.int64) + 1970
        hour_in_year = (
            seconds - stamps.astype("datetime64[Y]").astype("datetime64[s]").astype(np.int64)
        ) // HOUR_S
        out = np.empty(seconds.shape, dtype=np.float64)
        for year in np.unique(years):
            mask = years == year
            out[mask] = self.year_values(zone, int(year))[hour_in_year[mask]]
        return out

    def intensity(self, zone: str, time: datetime | None = None) -> Reading:
        """The synthetic value of the UTC hour containing ``time`` (default now)."""
        when = utcnow() if time is None else as_utc(time, what="requested time")
        hour_s = int(when.timestamp()) // HOUR_S * HOUR_S
        value = float(self.values_at(zone, [hour_s])[0])
        return self._reading(zone, hour_s, value, Kind.SYNTHETIC)

    def history(self, zone: str, start: datetime, end: datetime) -> list[Reading]:
        """Synthetic hourly readings for the hours starting in ``[start, end)``."""
        hours = _hours(start, end)
        values = self.values_at(zone, hours)
        return [
            self._reading(zone, int(t), float(v), Kind.SYNTHETIC)
            for t, v in zip(hours, values, strict=True)
        ]

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> list[Reading]:
        """Each hour from ``start`` (default now) over ``horizon``: the profile's expectation
        plus the current deviation from it, fading as the model's deviations do."""
        begin = forecast_start(start)
        hours = _hours(begin, begin + horizon)
        profile = zone_profile(zone, self.profile_set)
        anchor_s = int(begin.timestamp()) // HOUR_S * HOUR_S  # the hour holding ``begin``
        now_value = float(self.values_at(zone, [anchor_s])[0])
        deviation = now_value - float(profile.expectation([anchor_s])[0])
        values = profile.expectation(hours) + deviation * profile.deviation_memory(anchor_s, hours)
        values = np.clip(
            values, max(profile.floor, 0.0), min(profile.ceiling, MAX_PLAUSIBLE_G_PER_KWH)
        )
        return [
            self._reading(zone, int(t), float(v), Kind.FORECAST)
            for t, v in zip(hours, values, strict=True)
        ]

    def trace(self, year: int, zones: list[str] | None = None) -> TraceSource:
        """A whole generated UTC ``year`` as a :class:`TraceSource` (kind SYNTHETIC)."""
        names = self.zones() if zones is None else zones
        values = np.vstack([self.year_values(zone, year) for zone in names])
        return TraceSource(
            names,
            datetime(year, 1, 1, tzinfo=UTC),
            HOUR_S,
            values,
            basis=self.profile_set.basis,
            kind=Kind.SYNTHETIC,
            label=f"{self.profile_set.source_text}, seed {self.seed}",
        )

    def _reading(self, zone: str, hour_s: int, value: float, kind: Kind) -> Reading:
        return Reading(
            zone,
            datetime.fromtimestamp(hour_s, UTC),
            value,
            self.profile_set.basis,
            kind,
            self.profile_set.source_text,
        )


def _hours(start: datetime, end: datetime) -> npt.NDArray[np.int64]:
    """Epoch seconds of the UTC hours starting in ``[start, end)``."""
    first = -(-int(as_utc(start, what="start").timestamp()) // HOUR_S) * HOUR_S
    stop = int(np.ceil(as_utc(end, what="end").timestamp()))
    return np.arange(first, stop, HOUR_S, dtype=np.int64)
