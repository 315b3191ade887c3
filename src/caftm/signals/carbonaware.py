"""Green Software Foundation Carbon Aware SDK WebAPI client.

The WebAPI is self-hosted in front of a data source (WattTime, Electricity Maps, JSON files);
locations are the SDK's location names (by default Azure region names such as ``westeurope``).
Electricity Maps zone keys are mapped through :data:`ZONE_TO_LOCATION`, or a location name may be
used directly. Values (``rating``/``value``) are gCO2eq/kWh; the basis depends on the SDK's data
source and is set at construction. The SDK does not say whether a value was measured or
estimated: its readings are kind UNKNOWN.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from caftm.errors import ProviderError
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
    forecast_window,
    iso_z,
    mapped_name,
    parse_utc,
    pick_in_force,
    provider_reading,
    series_step,
)

DEFAULT_BASE_URL = "http://localhost:5073"

#: Electricity Maps zone -> Carbon Aware SDK location (Azure region names; ``locations=`` extends).
ZONE_TO_LOCATION: dict[str, str] = {
    "KR": "koreacentral",
    "JP-TK": "japaneast",
    "JP-KN": "japanwest",
    "FR": "francecentral",
    "DE": "germanywestcentral",
    "GB": "uksouth",
    "CA-ON": "canadacentral",
    "CA-QC": "canadaeast",
    "US-CAL-CISO": "westus",
    "US-MIDA-PJM": "eastus",
    "SE-SE3": "swedencentral",
    "SG": "southeastasia",
    "IN-WE": "westindia",
    "NL": "westeurope",
    "IE": "northeurope",
}


def _looks_like_location(name: str) -> bool:
    """Whether ``name`` reads as an SDK location (Azure style: lower-case letters and digits)."""
    return name.isalnum() and name.lower() == name


class CarbonAwareSource(HttpSource):
    """Carbon intensity from a Carbon Aware SDK WebAPI deployment.

    Args:
        base_url: Root of the WebAPI deployment.
        locations: Extra or overriding zone -> location entries.
        location: Force this SDK location for every zone (the CLI's ``--region``).
        basis: What the deployment's data source counts (default lifecycle).
        policy: Timeouts and retries.
        lookback: How far back :meth:`intensity` searches for the reading in force.
    """

    name = "carbonaware"

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        locations: Mapping[str, str] | None = None,
        location: str | None = None,
        basis: Basis = Basis.LIFECYCLE,
        policy: RetryPolicy | None = None,
        lookback: timedelta = timedelta(hours=2),
    ) -> None:
        self.locations = {**ZONE_TO_LOCATION, **(locations or {})}
        self.location_override = location
        self.basis = Basis(basis)
        self.lookback = lookback
        self._http = JsonClient(
            self.name,
            base_url,
            auth_hint="the Carbon Aware WebAPI refused access; check the deployment's auth",
            policy=policy,
        )

    def zones(self) -> list[str]:
        """Zones with a known SDK location."""
        return sorted(self.locations)

    def location_for(self, zone: str) -> str:
        """The SDK location answering for ``zone``.

        Raises:
            ConfigError: no mapping and ``zone`` does not look like a location name.
        """
        return mapped_name(
            zone,
            self.locations,
            override=self.location_override,
            looks_native=_looks_like_location,
            what="Carbon Aware SDK location",
            example="location='westeurope'",
        )

    def _emissions(self, body: Any, zone_of: Mapping[str, str], kind: Kind) -> list[Reading]:
        """Readings from an emissions answer, keyed by the zone asked for: ``zone_of`` maps each
        location asked (lower case) to its zone, and ``""`` to the zone of any other location
        (the SDK may answer with its backing provider's own region name)."""
        if body is None:  # 204 No Content: nothing in the range
            return []
        if not isinstance(body, list):
            raise ProviderError(f"{self.name} emissions answer is not a list")
        readings = []
        for item in body:
            if not isinstance(item, dict):
                raise ProviderError(f"{self.name} gave a malformed emissions entry: {item!r}")
            location = str(item.get("location", ""))
            zone = zone_of.get(location.lower()) or zone_of.get("")
            if zone is None:
                raise ProviderError(
                    f"{self.name} answered for location {location!r}, which was not asked for "
                    f"({', '.join(sorted(zone_of))})"
                )
            readings.append(
                provider_reading(
                    provider=self.name,
                    zone=zone,
                    time=parse_utc(item.get("time"), provider=self.name),
                    value=item.get("rating"),
                    basis=self.basis,
                    kind=kind,
                )
            )
        return sorted(readings, key=lambda r: r.time)

    def intensity(self, zone: str, time: datetime | None = None) -> Reading:
        """The latest emissions point at or before ``time`` (default now)."""
        at = utcnow() if time is None else as_utc(time, what=f"time for zone {zone}")
        found = pick_in_force(self.history(zone, at - self.lookback, at + timedelta(seconds=1)), at)
        if found is None:
            raise ProviderError(f"{self.name} has no emissions data for zone {zone} at {iso_z(at)}")
        return found

    def history(self, zone: str, start: datetime, end: datetime) -> list[Reading]:
        """Emissions points in ``[start, end)`` (``/emissions/bylocation``), keyed by ``zone``
        whatever location name the SDK answers with."""
        start, end = history_range(zone, start, end)
        location = self.location_for(zone)
        params = {"location": location, "time": iso_z(start), "toTime": iso_z(end)}
        body = self._http.get_json("/emissions/bylocation", params)
        readings = self._emissions(body, {location.lower(): zone, "": zone}, Kind.UNKNOWN)
        return [r for r in readings if start <= r.time < end]

    def history_many(self, zones: list[str], start: datetime, end: datetime) -> list[Reading]:
        """Emissions points for several zones (``/emissions/bylocations``), keyed by the zones
        asked for. When the SDK answers with location names other than those asked (its
        backing provider's own regions), each zone is asked for on its own instead."""
        start, end = history_range(",".join(zones), start, end)
        asked = {self.location_for(z).lower(): z for z in zones}
        params: list[tuple[str, str]] = [("location", self.location_for(z)) for z in zones]
        params += [("time", iso_z(start)), ("toTime", iso_z(end))]
        body = self._http.get_json("/emissions/bylocations", params)
        answered = {
            str(item.get("location", "")).lower()
            for item in (body if isinstance(body, list) else [])
            if isinstance(item, dict)
        }
        if answered - set(asked):
            return [r for z in zones for r in self.history(z, start, end)]
        readings = self._emissions(body, asked, Kind.UNKNOWN)
        return [r for r in readings if start <= r.time < end]

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> list[Reading]:
        """The current forecast (``/emissions/forecasts/current``) within the window.

        The whole current forecast is asked for (the SDK refuses a window reaching past the
        forecast it holds) and cut to the window here; a window reaching past the forecast's
        end is clamped to it, with a note saying so.
        """
        begin = forecast_start(start)
        location = self.location_for(zone)
        body = self._http.get_json("/emissions/forecasts/current", {"location": location})
        if body is None:
            raise ProviderError(f"{self.name} has no current forecast for {location} (HTTP 204)")
        if not isinstance(body, list) or not body or not isinstance(body[0], dict):
            raise ProviderError(f"{self.name} forecast for {location} is empty or malformed")
        points = body[0].get("forecastData")
        if not isinstance(points, list):
            raise ProviderError(f"{self.name} forecast for {location} lacks forecastData")
        readings = []
        for point in points:
            if not isinstance(point, dict):
                raise ProviderError(f"{self.name} gave a malformed forecast point: {point!r}")
            readings.append(
                provider_reading(
                    provider=self.name,
                    zone=zone,
                    time=parse_utc(point.get("timestamp"), provider=self.name),
                    value=point.get("value"),
                    basis=self.basis,
                    kind=Kind.FORECAST,
                )
            )
        readings.sort(key=lambda r: r.time)
        window = forecast_window(readings, begin, horizon, provider=self.name, zone=zone)
        if readings:
            covered = readings[-1].time + series_step(readings)
            if covered < begin + horizon:
                hours = max(0.0, (covered - begin).total_seconds() / 3600.0)
                self.note(
                    f"{self.name} forecast for zone {zone} reaches only {iso_z(covered)}: "
                    f"{hours:.1f} h of the {horizon.total_seconds() / 3600:g} h asked for are shown"
                )
        return window
