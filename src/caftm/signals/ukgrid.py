"""UK Carbon Intensity API client (National Grid ESO; no key), zone ``GB``, half-hourly.

Each period carries a ``forecast`` and, once known, an ``actual`` (gCO2/kWh, direct emissions).
Readings take ``actual`` when present (kind MEASURED); otherwise ``forecast`` with kind ESTIMATED
for past periods and FORECAST for future ones.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from caftm.errors import ConfigError, ProviderError
from caftm.signals.base import (
    Basis,
    Kind,
    Reading,
    as_utc,
    forecast_start,
    history_range,
    utcnow,
)
from caftm.signals.http import (
    HttpSource,
    JsonClient,
    RetryPolicy,
    chunked,
    forecast_window,
    parse_utc,
    pick_in_force,
    provider_reading,
    unique_in_range,
)

DEFAULT_BASE_URL = "https://api.carbonintensity.org.uk"
ZONE = "GB"
PERIOD = timedelta(minutes=30)
#: Longest range one /intensity/{from}/{to} call may ask for; longer ranges are split.
RANGE_MAX = timedelta(days=14)


def _stamp(time: datetime) -> str:
    return as_utc(time).strftime("%Y-%m-%dT%H:%MZ")


class UkGridSource(HttpSource):
    """Carbon intensity of Great Britain from api.carbonintensity.org.uk.

    Args:
        base_url: API root (tests point it at a local server).
        policy: Timeouts and retries.
        range_max: Longest range per call.
    """

    name = "ukgrid"

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        policy: RetryPolicy | None = None,
        range_max: timedelta = RANGE_MAX,
    ) -> None:
        self.range_max = range_max
        self._http = JsonClient(
            self.name,
            base_url,
            auth_hint="the UK Carbon Intensity API needs no key; check the base URL",
            policy=policy,
        )

    def zones(self) -> list[str]:
        """Only ``GB``."""
        return [ZONE]

    def _check_zone(self, zone: str) -> None:
        if zone != ZONE:
            raise ConfigError(f"the UK Carbon Intensity API covers zone 'GB' only, not {zone!r}")

    def _readings(self, body: Any, *, now: datetime, as_forecast: bool = False) -> list[Reading]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ProviderError(f"{self.name} answer lacks a 'data' list")
        readings = []
        for period in data:
            if not isinstance(period, dict) or not isinstance(period.get("intensity"), dict):
                raise ProviderError(f"{self.name} gave a malformed period: {period!r}")
            start = parse_utc(period.get("from"), provider=self.name, what="'from'")
            values = period["intensity"]
            if as_forecast:
                value, kind = values.get("forecast"), Kind.FORECAST
            elif values.get("actual") is not None:
                value, kind = values["actual"], Kind.MEASURED
            else:
                value = values.get("forecast")
                kind = Kind.FORECAST if start > now else Kind.ESTIMATED
            readings.append(
                provider_reading(
                    provider=self.name,
                    zone=ZONE,
                    time=start,
                    value=value,
                    basis=Basis.DIRECT,
                    kind=kind,
                )
            )
        return sorted(readings, key=lambda r: r.time)

    def intensity(self, zone: str, time: datetime | None = None) -> Reading:
        """The half-hour in force at ``time`` (now: ``/intensity``)."""
        self._check_zone(zone)
        now = utcnow()
        if time is None:
            readings = self._readings(self._http.get_json("/intensity"), now=now)
            found = readings[-1] if readings else None
            at = now
        else:
            at = as_utc(time, what="time for zone GB")
            path = f"/intensity/{_stamp(at - PERIOD)}/{_stamp(at + PERIOD)}"
            found = pick_in_force(self._readings(self._http.get_json(path), now=now), at)
        if found is None:
            raise ProviderError(f"{self.name} has no period for GB at {_stamp(at)}")
        return found

    def history(self, zone: str, start: datetime, end: datetime) -> list[Reading]:
        """Half-hours starting in ``[start, end)``, split into calls of at most 14 days."""
        self._check_zone(zone)
        start, end = history_range("GB", start, end)
        now = utcnow()
        readings: list[Reading] = []
        for chunk_start, chunk_end in chunked(start, end, self.range_max):
            path = f"/intensity/{_stamp(chunk_start)}/{_stamp(chunk_end)}"
            readings.extend(self._readings(self._http.get_json(path), now=now))
        return unique_in_range(readings, start, end)

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> list[Reading]:
        """Forecast half-hours from ``start`` (``/intensity/{from}/fw24h`` or ``fw48h``)."""
        self._check_zone(zone)
        begin = forecast_start(start)
        window = "fw24h" if horizon <= timedelta(hours=24) else "fw48h"
        body = self._http.get_json(f"/intensity/{_stamp(begin)}/{window}")
        readings = self._readings(body, now=utcnow(), as_forecast=True)
        if horizon > timedelta(hours=48):
            self.note(
                f"{self.name} forecasts at most 48 h: {horizon.total_seconds() / 3600:g} h asked "
                "for, 48 h shown"
            )
        return forecast_window(readings, begin, horizon, provider=self.name, zone=zone)
