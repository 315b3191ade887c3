"""Electricity Maps API v3 client (carbon intensity: latest, history, past-range, forecast).

Auth: the ``auth-token`` header, from ``CAFTM_ELECTRICITYMAPS_TOKEN`` / ``ELECTRICITYMAPS_TOKEN``
or the credentials file (see :mod:`caftm.signals.credentials`). Zones are Electricity Maps zone
keys (``DE``, ``JP-TK``, ``US-CAL-CISO``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

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
from caftm.signals.credentials import how_to_set, require_secret
from caftm.signals.http import (
    HttpSource,
    JsonClient,
    RetryPolicy,
    chunked,
    forecast_window,
    fresh_in_force,
    iso_z,
    parse_utc,
    pick_in_force,
    provider_reading,
    unique_in_range,
)

DEFAULT_BASE_URL = "https://api.electricitymap.org"
#: Longest range one past-range call may ask for (hourly data); longer ranges are split.
PAST_RANGE_MAX = timedelta(days=10)
#: How far back /history reaches.
HISTORY_WINDOW = timedelta(hours=24)


class ElectricityMapsSource(HttpSource):
    """Carbon intensity from the Electricity Maps API v3.

    Args:
        token: API token; default from the environment or credentials file.
        base_url: API root (tests point it at a local server).
        basis: Lifecycle (default) or direct emission factors (``emissionFactorType``).
        zones: Zones to advertise from :meth:`zones` (the API itself knows ~350).
        policy: Timeouts and retries.
        past_range_max: Longest range per past-range call.

    Raises:
        AuthError: no token was given or found.
    """

    name = "electricitymaps"

    def __init__(
        self,
        *,
        token: SecretStr | str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        basis: Basis = Basis.LIFECYCLE,
        zones: list[str] | None = None,
        policy: RetryPolicy | None = None,
        past_range_max: timedelta = PAST_RANGE_MAX,
    ) -> None:
        secret = SecretStr(token) if isinstance(token, str) else token
        secret = secret or require_secret(self.name, "token")
        self.basis = Basis(basis)
        self.past_range_max = past_range_max
        self._zones = list(zones or [])
        self._http = JsonClient(
            self.name,
            base_url,
            auth_hint=how_to_set(self.name, "token"),
            policy=policy,
            headers={"auth-token": secret.get_secret_value()},
            secrets=[secret],
        )

    def __repr__(self) -> str:
        return (
            f"ElectricityMapsSource(base_url={self._http.base_url!r}, basis={self.basis.value!r})"
        )

    def zones(self) -> list[str]:
        """Zones given at construction (empty: any zone key the API accepts)."""
        return list(self._zones)

    def _params(self, zone: str, **extra: str) -> dict[str, str]:
        if not zone or not zone.strip():
            raise ConfigError("zone must be a non-empty Electricity Maps zone key such as 'DE'")
        # Without this the API answers for the caller's own location when it does not cover
        # the zone asked for.
        return {
            "zone": zone,
            "emissionFactorType": self.basis.value,
            "shouldUseFallbackCallerLookup": "false",
            **extra,
        }

    def _check_zone(self, zone: str, body: Any) -> None:
        answered = body.get("zone") if isinstance(body, dict) else None
        if answered is not None and str(answered).upper() != zone.upper():
            raise ProviderError(
                f"{self.name} answered for zone {answered!r} when asked for zone {zone!r}; "
                "the zone is probably not covered (or was relabelled): not using that answer"
            )

    def _reading(self, zone: str, item: Any, *, kind: Kind | None = None) -> Reading:
        if not isinstance(item, dict):
            raise ProviderError(f"{self.name} gave a malformed entry for zone {zone}: {item!r}")
        self._check_zone(zone, item)
        when = parse_utc(item.get("datetime"), provider=self.name)
        if kind is None:
            estimated = item.get("isEstimated")
            if estimated is None:  # the provider does not say
                kind = Kind.UNKNOWN
            else:
                kind = Kind.ESTIMATED if estimated else Kind.MEASURED
        basis = self.basis
        factor_type = item.get("emissionFactorType")
        if factor_type in (Basis.LIFECYCLE.value, Basis.DIRECT.value):
            basis = Basis(factor_type)
        value = item.get("carbonIntensity")
        if value is None:
            raise ProviderError(
                f"{self.name} has no value (carbonIntensity null) for zone {zone} at {iso_z(when)}"
            )
        return provider_reading(
            provider=self.name, zone=zone, time=when, value=value, basis=basis, kind=kind
        )

    def _list(self, zone: str, body: Any, *keys: str, kind: Kind | None = None) -> list[Reading]:
        entries = None
        if isinstance(body, dict):
            self._check_zone(zone, body)
            entries = next((body[k] for k in keys if isinstance(body.get(k), list)), None)
        if entries is None:
            raise ProviderError(
                f"{self.name} answer for zone {zone} lacks a list under {' or '.join(keys)}"
            )
        readings = []
        gaps: list[str] = []
        for item in entries:
            if (
                isinstance(item, dict)
                and "carbonIntensity" in item
                and (item["carbonIntensity"] is None)
            ):
                gaps.append(str(item.get("datetime")))
                continue
            readings.append(self._reading(zone, item, kind=kind))
        if gaps:
            self.note(
                f"{self.name} gave no value (null) for zone {zone} at {len(gaps)} time(s) "
                f"({_span(gaps)}): left out as gaps, not filled"
            )
        return sorted(readings, key=lambda r: r.time)

    def latest(self, zone: str) -> Reading:
        """The most recent reading for ``zone`` (``/v3/carbon-intensity/latest``)."""
        body = self._http.get_json("/v3/carbon-intensity/latest", self._params(zone))
        return self._reading(zone, body)

    def intensity(self, zone: str, time: datetime | None = None) -> Reading:
        """The reading in force at ``time`` (now: latest; past: past-range; future: forecast)."""
        now = utcnow()
        if time is None:
            return self.latest(zone)
        at = as_utc(time, what=f"time for zone {zone}")
        if at > now + timedelta(minutes=5):
            found = fresh_in_force(
                self.forecast(zone, now, at - now + timedelta(hours=1)),
                at,
                provider=self.name,
                zone=zone,
            )
        elif at >= now - timedelta(hours=1):
            return self.latest(zone)
        else:
            found = pick_in_force(
                self.history(zone, at - timedelta(hours=2), at + timedelta(seconds=1)), at
            )
        if found is None:
            raise ProviderError(f"{self.name} has no reading for zone {zone} at {iso_z(at)}")
        return found

    def history(self, zone: str, start: datetime, end: datetime) -> list[Reading]:
        """Readings in ``[start, end)``: ``/history`` for the last 24 h, else past-range chunks."""
        start, end = history_range(zone, start, end)
        if start >= utcnow() - HISTORY_WINDOW:
            body = self._http.get_json("/v3/carbon-intensity/history", self._params(zone))
            readings = self._list(zone, body, "history", "data")
        else:
            readings = []
            for chunk_start, chunk_end in chunked(start, end, self.past_range_max):
                params = self._params(zone, start=iso_z(chunk_start), end=iso_z(chunk_end))
                body = self._http.get_json("/v3/carbon-intensity/past-range", params)
                readings.extend(self._list(zone, body, "data", "history"))
        return unique_in_range(readings, start, end)

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> list[Reading]:
        """The provider's forecast (``/v3/carbon-intensity/forecast``) within the window."""
        begin = forecast_start(start)
        body = self._http.get_json("/v3/carbon-intensity/forecast", self._params(zone))
        readings = self._list(zone, body, "forecast", kind=Kind.FORECAST)
        return forecast_window(readings, begin, horizon, provider=self.name, zone=zone)


def _span(times: list[str]) -> str:
    """``first`` or ``first … last`` of provider timestamps, for a note."""
    return times[0] if len(times) == 1 else f"{times[0]} … {times[-1]}"
