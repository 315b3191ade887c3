"""The signal contract: typed carbon-intensity readings and the source interface.

Every source (trace file, embedded profile, live provider, cache, fallback chain) implements
:class:`IntensitySource`. All times are timezone-aware UTC; naive timestamps are refused.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from caftm.errors import ConfigError

logger = logging.getLogger(__name__)

#: Above this a reading is considered absurd (the dirtiest grids stay well below ~1,200).
MAX_PLAUSIBLE_G_PER_KWH = 2500.0


class Basis(StrEnum):
    """Which emissions a figure counts."""

    LIFECYCLE = "lifecycle"
    DIRECT = "direct"


class Kind(StrEnum):
    """How a figure came to be."""

    MEASURED = "measured"
    ESTIMATED = "estimated"
    FORECAST = "forecast"
    SYNTHETIC = "synthetic"  # generated from the embedded typical-year profiles
    UNKNOWN = "unknown"  # a provider's reading that does not say whether it was estimated


@dataclass(frozen=True, slots=True)
class Reading:
    """One carbon-intensity value of one zone at one UTC time."""

    zone: str
    time: datetime
    intensity_g_per_kwh: float
    basis: Basis
    kind: Kind
    source: str

    def __post_init__(self) -> None:
        as_utc(self.time, what=f"reading time for zone {self.zone}")
        check_intensity(self.intensity_g_per_kwh, where=f"{self.source} zone {self.zone}")


def as_utc(time: datetime, *, what: str = "timestamp") -> datetime:
    """Return ``time`` converted to UTC; refuse naive timestamps.

    Raises:
        ConfigError: ``time`` has no timezone, or in UTC it falls outside years 1..9999.
    """
    if time.tzinfo is None or time.utcoffset() is None:
        raise ConfigError(
            f"{what} {time.isoformat()} has no timezone; give it in UTC (e.g. '...+00:00' or 'Z')"
        )
    try:
        return time.astimezone(UTC)
    except OverflowError:
        raise ConfigError(
            f"{what} {time.isoformat()} is outside the years 1..9999 once converted to UTC"
        ) from None


def history_range(zone: str, start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``(start, end)`` in UTC for a history query of ``zone``.

    Raises:
        ConfigError: a naive bound, or ``end <= start``.
    """
    start = as_utc(start, what="history start")
    end = as_utc(end, what="history end")
    if end <= start:
        raise ConfigError(
            f"history range for zone {zone} is empty: end {end.isoformat()} <= start "
            f"{start.isoformat()}"
        )
    return start, end


def forecast_start(start: datetime | None) -> datetime:
    """The start of a forecast window: ``start`` in UTC, or now when None.

    Raises:
        ConfigError: ``start`` has no timezone.
    """
    return utcnow() if start is None else as_utc(start, what="forecast start")


def check_intensity(value: float, *, where: str) -> float:
    """Validate one intensity in gCO2eq/kWh.

    Raises:
        ConfigError: negative, NaN or above :data:`MAX_PLAUSIBLE_G_PER_KWH`.
    """
    if not (0.0 <= value <= MAX_PLAUSIBLE_G_PER_KWH):
        raise ConfigError(
            f"implausible carbon intensity {value!r} gCO2eq/kWh in {where} "
            f"(expected 0..{MAX_PLAUSIBLE_G_PER_KWH:g})"
        )
    return value


class IntensitySource(abc.ABC):
    """Carbon intensity of a grid zone now, in the past, and forecast.

    Implementations raise :class:`~caftm.errors.ConfigError` for an unknown zone and
    :class:`~caftm.errors.ProviderError` when the data cannot be obtained.
    """

    #: Short name recorded in each reading's ``source``.
    name: str = "source"

    @abc.abstractmethod
    def zones(self) -> list[str]:
        """Zones this source can answer for (may be empty if unknown in advance)."""

    @abc.abstractmethod
    def intensity(self, zone: str, time: datetime | None = None) -> Reading:
        """The reading in force for ``zone`` at ``time`` (default: now)."""

    @abc.abstractmethod
    def history(self, zone: str, start: datetime, end: datetime) -> list[Reading]:
        """Readings for ``zone`` in ``[start, end)``, oldest first."""

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> list[Reading]:
        """Hourly forecast for ``zone`` from ``start`` over ``horizon`` (kind FORECAST).

        Sources without a native forecast override this using :mod:`caftm.signals.forecast`.
        """
        raise NotImplementedError(f"{self.name} gives no forecast")

    def note(self, message: str) -> None:
        """Record something a caller should be told about the last answers (a gap left out, a
        horizon clamped, a fallback taken); it is also logged as a warning."""
        logger.warning("%s", message)
        notes: list[str] = self.__dict__.setdefault("_notes", [])
        if message not in notes:
            notes.append(message)

    def take_notes(self) -> list[str]:
        """The notes recorded since the last call, oldest first (and forget them)."""
        notes: list[str] = self.__dict__.pop("_notes", [])
        return notes


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
