"""WattTime API v3 client: marginal operating emissions rate (MOER), converted to gCO2/kWh.

Login is HTTP basic auth on ``/login`` and yields a bearer token valid 30 minutes; the client
renews it before expiry and once more on a 401. Credentials come from ``CAFTM_WATTTIME_USERNAME``
/ ``CAFTM_WATTTIME_PASSWORD`` (or ``WATTTIME_USERNAME``/``WATTTIME_USER``/``WATTTIME_PASSWORD``) or
the credentials file. Zones are Electricity Maps keys mapped to WattTime regions by
:data:`ZONE_TO_REGION`, or WattTime region names given directly (``CAISO_NORTH``).
"""

from __future__ import annotations

import threading
import time as _time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import SecretStr

from caftm.errors import AuthError, ProviderError
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
    AccessDeniedError,
    HttpSource,
    JsonClient,
    RetryPolicy,
    chunked,
    forecast_window,
    fresh_in_force,
    iso_z,
    mapped_name,
    parse_utc,
    pick_in_force,
    provider_reading,
    unique_in_range,
)

DEFAULT_BASE_URL = "https://api.watttime.org"
#: 1 lb/MWh = 453.592 g / 1000 kWh.
G_PER_KWH_PER_LBS_PER_MWH = 0.453592
SIGNAL = "co2_moer"
TOKEN_LIFETIME_S = 30 * 60.0
#: Renew the token this long before it expires.
TOKEN_MARGIN_S = 5 * 60.0
#: Longest range per /v3/historical call; longer ranges are split.
HISTORICAL_MAX = timedelta(days=30)

#: Electricity Maps zone -> WattTime region (a small default; pass ``regions=`` to extend).
ZONE_TO_REGION: dict[str, str] = {
    "US-CAL-CISO": "CAISO_NORTH",
    "US-MIDA-PJM": "PJM_DC",
    "US-NY-NYIS": "NYISO_NYC",
    "US-NW-BPAT": "BPA",
    "US-TEX-ERCO": "ERCOT_EASTTX",
    "US-MIDW-MISO": "MISO_INDIANAPOLIS",
    "US-NE-ISNE": "ISONE_WCMA",
    "US-CENT-SWPP": "SPP_KC",
    "DE": "DE",
    "FR": "FR",
    "GB": "UK",
}


def _looks_like_region(name: str) -> bool:
    """Whether ``name`` reads as a WattTime region (upper case, words joined by ``_``)."""
    return "_" in name and name.replace("_", "").isalnum() and name.upper() == name


@dataclass(frozen=True, slots=True)
class SignalIndex:
    """WattTime's relative cleanliness now: a 0-100 percentile, NOT an intensity.

    Attributes:
        zone: The zone asked for.
        region: The WattTime region answering.
        time: Start of the interval (UTC).
        percentile: 0 (cleanest of the recent past) to 100 (dirtiest).
    """

    zone: str
    region: str
    time: datetime
    percentile: float


class WattTimeSource(HttpSource):
    """Marginal CO2 intensity from WattTime v3, in gCO2/kWh (basis direct, marginal).

    Args:
        username: WattTime user; default from environment or credentials file.
        password: WattTime password; likewise.
        base_url: API root (tests point it at a local server).
        regions: Extra or overriding zone -> WattTime region entries.
        region: Force this WattTime region for every zone (the CLI's ``--region``).
        policy: Timeouts and retries.
        historical_max: Longest range per ``/v3/historical`` call; longer ranges are split.
        clock: Monotonic seconds, injectable for token-expiry tests.

    Raises:
        AuthError: no username or password was given or found.
    """

    name = "watttime"

    def __init__(
        self,
        *,
        username: str | None = None,
        password: SecretStr | str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        regions: Mapping[str, str] | None = None,
        region: str | None = None,
        policy: RetryPolicy | None = None,
        historical_max: timedelta = HISTORICAL_MAX,
        clock: Callable[[], float] = _time.monotonic,
    ) -> None:
        self._username = username or require_secret(self.name, "username").get_secret_value()
        secret = SecretStr(password) if isinstance(password, str) else password
        self._password = secret or require_secret(self.name, "password")
        self.regions = {**ZONE_TO_REGION, **(regions or {})}
        self.region_override = region
        self.historical_max = historical_max
        self._clock = clock
        self._token: SecretStr | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()
        self._http = JsonClient(
            self.name,
            base_url,
            auth_hint=(
                f"{how_to_set(self.name, 'username')}; and {how_to_set(self.name, 'password')}"
            ),
            policy=policy,
            secrets=[self._password],
        )

    def zones(self) -> list[str]:
        """Zones with a known WattTime region."""
        return sorted(self.regions)

    def region_for(self, zone: str) -> str:
        """The WattTime region answering for ``zone``.

        Raises:
            ConfigError: no mapping and ``zone`` does not look like a WattTime region.
        """
        return mapped_name(
            zone,
            self.regions,
            override=self.region_override,
            looks_native=_looks_like_region,
            what="WattTime region",
            example="region='CAISO_NORTH'",
        )

    def _login(self) -> SecretStr:
        with self._lock:
            if self._token is not None and self._clock() < self._token_expires:
                return self._token
            body = self._http.get_json(
                "/login", auth=(self._username, self._password.get_secret_value())
            )
            token = body.get("token") if isinstance(body, dict) else None
            if not isinstance(token, str) or not token:
                raise ProviderError(f"{self.name} /login answered without a token")
            self._token = SecretStr(token)
            self._http.add_secret(self._token)
            self._token_expires = self._clock() + TOKEN_LIFETIME_S - TOKEN_MARGIN_S
            return self._token

    def _get(self, path: str, params: dict[str, str]) -> Any:
        for attempt in range(2):
            token = self._login()
            headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
            try:
                return self._http.get_json(path, params, headers=headers)
            except AccessDeniedError:  # 403: not in the plan; logging in again cannot help
                raise
            except AuthError:
                if attempt:
                    raise
                with self._lock:  # token expired early or was revoked: log in once more
                    self._token = None
        raise AssertionError("unreachable")  # pragma: no cover

    def _readings(self, zone: str, body: Any, kind: Kind) -> list[Reading]:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ProviderError(f"{self.name} answer for zone {zone} lacks a 'data' list")
        units = (body.get("meta") or {}).get("units", "lbs_co2_per_mwh")
        if units != "lbs_co2_per_mwh":
            raise ProviderError(f"{self.name} gave units {units!r} for zone {zone}; expected lbs")
        readings = []
        for item in data:
            value = item.get("value") if isinstance(item, dict) else None
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = value * G_PER_KWH_PER_LBS_PER_MWH
            readings.append(
                provider_reading(
                    provider=self.name,
                    zone=zone,
                    time=parse_utc(item.get("point_time"), provider=self.name),
                    value=value,
                    basis=Basis.DIRECT,
                    kind=kind,
                )
            )
        return sorted(readings, key=lambda r: r.time)

    def signal_index(self, zone: str) -> SignalIndex:
        """The current 0-100 percentile (``/v3/signal-index``); not an intensity."""
        region = self.region_for(zone)
        body = self._get("/v3/signal-index", {"region": region, "signal_type": SIGNAL})
        try:
            point = body["data"][0]
            percentile = float(point["value"])
            when = parse_utc(point["point_time"], provider=self.name)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise ProviderError(f"{self.name} signal-index for {region} is malformed") from e
        if not 0.0 <= percentile <= 100.0:
            raise ProviderError(f"{self.name} signal-index {percentile} for {region} not 0-100")
        return SignalIndex(zone, region, when, percentile)

    def intensity(self, zone: str, time: datetime | None = None) -> Reading:
        """MOER in force at ``time`` (now: the forecast's first point; past: historical)."""
        now = utcnow()
        at = now if time is None else as_utc(time, what=f"time for zone {zone}")
        if at >= now - timedelta(minutes=10):
            readings = self.forecast(zone, now, at - now + timedelta(minutes=10))
            found = fresh_in_force(readings, at, provider=self.name, zone=zone) or (
                readings[0] if readings else None
            )
            if found is not None and time is None:  # the current value is an estimate
                found = Reading(
                    zone,
                    found.time,
                    found.intensity_g_per_kwh,
                    Basis.DIRECT,
                    Kind.ESTIMATED,
                    self.name,
                )
        else:
            found = pick_in_force(
                self.history(zone, at - timedelta(hours=1), at + timedelta(seconds=1)), at
            )
        if found is None:
            raise ProviderError(f"{self.name} has no MOER for zone {zone} at {iso_z(at)}")
        return found

    def history(self, zone: str, start: datetime, end: datetime) -> list[Reading]:
        """MOER readings in ``[start, end)`` (``/v3/historical``, split into chunks)."""
        start, end = history_range(zone, start, end)
        region = self.region_for(zone)
        readings: list[Reading] = []
        for chunk_start, chunk_end in chunked(start, end, self.historical_max):
            params = {
                "region": region,
                "start": iso_z(chunk_start),
                "end": iso_z(chunk_end),
                "signal_type": SIGNAL,
            }
            body = self._get("/v3/historical", params)
            readings.extend(self._readings(zone, body, Kind.ESTIMATED))
        return unique_in_range(readings, start, end)

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> list[Reading]:
        """The current MOER forecast (``/v3/forecast``) within ``[start, start + horizon)``."""
        begin = forecast_start(start)
        reach = begin + horizon - utcnow()
        hours = max(0, min(72, int(reach.total_seconds() // 3600) + 1))
        params = {
            "region": self.region_for(zone),
            "signal_type": SIGNAL,
            "horizon_hours": str(hours),
        }
        readings = self._readings(zone, self._get("/v3/forecast", params), Kind.FORECAST)
        return forecast_window(readings, begin, horizon, provider=self.name, zone=zone)
