"""Local fake provider servers (127.0.0.1, port 0) speaking each provider's documented format.

Each server computes its answers from :func:`true_intensity`, a deterministic function of zone
and time, so tests can check a client's readings against the truth without hard-coding numbers.
Faults (status, Retry-After, HTML bodies, delays) are queued with :meth:`FakeProvider.fail` and
served before the normal answers.
"""

from __future__ import annotations

import base64
import json
import math
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LBS_PER_G_PER_KWH = 1 / 0.453592


def true_intensity(key: str, time: datetime, basis: str = "lifecycle") -> float:
    """The fake grid's intensity (gCO2/kWh) for ``key`` (zone/region/location) at ``time``;
    ``direct`` (combustion only) is 80 % of ``lifecycle``."""
    base = 80 + zlib.crc32(key.encode()) % 400
    hour = time.timestamp() / 3600.0
    value = base + 0.25 * base * math.sin(2 * math.pi * hour / 24.0)
    return round(value * (0.8 if basis == "direct" else 1.0), 3)


def floor_to(time: datetime, step: timedelta) -> datetime:
    """``time`` rounded down to a multiple of ``step`` since the epoch."""
    seconds = int(time.timestamp())
    return datetime.fromtimestamp(seconds - seconds % int(step.total_seconds()), UTC)


def iso_z(time: datetime) -> str:
    return time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse_iso(text: str) -> datetime:
    text = text.strip().replace(" ", "+")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class Fault:
    """One scripted answer served instead of the normal one."""

    status: int = 500
    body: Any = field(default_factory=lambda: {"error": "internal error"})
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Seen:
    """One request as the server received it."""

    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    at_s: float


class FakeProvider:
    """A threaded HTTP server on 127.0.0.1; subclasses implement :meth:`route`."""

    def __init__(self) -> None:
        self.faults: deque[Fault] = deque()
        self.seen: list[Seen] = []
        self.delay_s = 0.0
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                provider._handle(self)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail(self, *faults: Fault) -> None:
        """Serve ``faults`` (in order) before the normal answers."""
        with self._lock:
            self.faults.extend(faults)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def route(self, seen: Seen) -> tuple[int, Any]:
        raise NotImplementedError

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        seen = Seen(
            parts.path,
            parse_qs(parts.query),
            {k.lower(): v for k, v in handler.headers.items()},
            time.monotonic(),
        )
        with self._lock:
            self.seen.append(seen)
            fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            time.sleep(fault.delay_s)
            self._send(handler, fault.status, fault.body, fault.content_type, fault.headers)
            return
        if self.delay_s:
            time.sleep(self.delay_s)
        status, body = self.route(seen)
        self._send(handler, status, body, "application/json", {})

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: Any,
        content_type: str,
        headers: dict[str, str],
    ) -> None:
        raw = (
            body
            if isinstance(body, bytes)
            else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
        )
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(raw)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass


def _one(seen: Seen, name: str) -> str | None:
    values = seen.query.get(name)
    return values[0] if values else None


class ElectricityMapsServer(FakeProvider):
    """Electricity Maps v3: latest, history (24 h), past-range (max 10 days), forecast; each in
    the basis that ``emissionFactorType`` asks for (lifecycle when absent, as the API does)."""

    MAX_RANGE = timedelta(days=10)

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        #: Zones the API does not cover: as the real API does, it answers for the caller's own
        #: location (:attr:`caller_zone`) unless ``shouldUseFallbackCallerLookup=false``.
        self.uncovered: set[str] = set()
        self.caller_zone = "NL"

    def _entry(self, zone: str, t: datetime, basis: str, *, estimated: bool) -> dict[str, Any]:
        return {
            "zone": zone,
            "carbonIntensity": true_intensity(zone, t, basis),
            "datetime": iso_z(t),
            "updatedAt": iso_z(datetime.now(UTC)),
            "createdAt": iso_z(t),
            "emissionFactorType": basis,
            "isEstimated": estimated,
            "estimationMethod": "TIME_SLICER_AVERAGE" if estimated else None,
        }

    def route(self, seen: Seen) -> tuple[int, Any]:
        if seen.headers.get("auth-token") != self.token:
            return 401, {"status": "error", "message": "Invalid auth-token"}
        zone = _one(seen, "zone")
        if not zone:
            return 400, {"status": "error", "message": "zone is required"}
        if zone in self.uncovered:
            if _one(seen, "shouldUseFallbackCallerLookup") == "false":
                return 404, {"status": "error", "message": f"Zone '{zone}' does not exist."}
            zone = self.caller_zone
        basis = _one(seen, "emissionFactorType") or "lifecycle"  # the API's default: lifecycle
        if basis not in ("lifecycle", "direct"):
            return 400, {"status": "error", "message": f"unknown emissionFactorType {basis!r}"}
        now_hour = floor_to(datetime.now(UTC), timedelta(hours=1))
        hour = timedelta(hours=1)
        if seen.path == "/v3/carbon-intensity/latest":
            return 200, self._entry(zone, now_hour, basis, estimated=True)
        if seen.path == "/v3/carbon-intensity/history":
            times = [now_hour - hour * k for k in range(24, -1, -1)]
            return 200, {
                "zone": zone,
                "history": [self._entry(zone, t, basis, estimated=False) for t in times],
            }
        if seen.path == "/v3/carbon-intensity/past-range":
            start = parse_iso(_one(seen, "start") or "")
            end = parse_iso(_one(seen, "end") or "")
            if end - start > self.MAX_RANGE:
                return 400, {"status": "error", "message": "range longer than 10 days"}
            t = floor_to(start, hour)
            t = t if t >= start else t + hour
            data = []
            while t < end:
                data.append(self._entry(zone, t, basis, estimated=False))
                t += hour
            return 200, {"zone": zone, "data": data}
        if seen.path == "/v3/carbon-intensity/forecast":
            points = [
                {
                    "carbonIntensity": true_intensity(zone, now_hour + hour * k, basis),
                    "datetime": iso_z(now_hour + hour * k),
                }
                for k in range(25)
            ]
            return 200, {"zone": zone, "forecast": points, "updatedAt": iso_z(now_hour)}
        return 404, {"status": "error", "message": f"no route {seen.path}"}


class WattTimeServer(FakeProvider):
    """WattTime v3: /login (basic auth), signal-index, forecast, historical (5-min MOER)."""

    STEP = timedelta(minutes=5)
    MAX_RANGE = timedelta(days=32)

    def __init__(self, username: str, password: str) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.tokens: set[str] = set()
        self.logins = 0
        #: Serve forecasts as made this many hours ago (a provider that stopped updating).
        self.forecast_lag_h = 0.0

    def revoke_tokens(self) -> None:
        """Expire every issued token (the next data call gets 401)."""
        with self._lock:
            self.tokens.clear()

    def _points(self, region: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        t = floor_to(start, self.STEP)
        t = t if t >= start else t + self.STEP
        points = []
        while t < end:
            lbs = true_intensity(region, t) * LBS_PER_G_PER_KWH
            points.append({"point_time": iso_z(t), "value": round(lbs, 6)})
            t += self.STEP
        return points

    def _meta(self, region: str, units: str = "lbs_co2_per_mwh") -> dict[str, Any]:
        return {
            "region": region,
            "signal_type": "co2_moer",
            "units": units,
            "data_point_period_seconds": 300,
            "model": {"date": "2023-03-01"},
            "warnings": [],
        }

    def route(self, seen: Seen) -> tuple[int, Any]:
        if seen.path == "/login":
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            if seen.headers.get("authorization") != f"Basic {expected}":
                return 401, {"error": "invalid username or password"}
            with self._lock:
                self.logins += 1
                token = f"tok-{self.logins}-{zlib.crc32(self.password.encode())}"
                self.tokens.add(token)
            return 200, {"token": token}
        bearer = seen.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.tokens:
            return 401, {"error": "token expired or invalid"}
        region = _one(seen, "region")
        if not region or _one(seen, "signal_type") != "co2_moer":
            return 400, {"error": "region and signal_type=co2_moer are required"}
        now = floor_to(datetime.now(UTC), self.STEP)
        if seen.path == "/v3/signal-index":
            return 200, {
                "data": [{"point_time": iso_z(now), "value": 37.0}],
                "meta": self._meta(region, "percentile"),
            }
        if seen.path == "/v3/forecast":
            hours = int(_one(seen, "horizon_hours") or 24)
            now = floor_to(now - timedelta(hours=self.forecast_lag_h), self.STEP)
            end = now + timedelta(hours=hours) + self.STEP
            meta = {**self._meta(region), "generated_at": iso_z(now)}
            return 200, {"data": self._points(region, now, end), "meta": meta}
        if seen.path == "/v3/historical":
            start = parse_iso(_one(seen, "start") or "")
            end = parse_iso(_one(seen, "end") or "")
            if end - start > self.MAX_RANGE:
                return 400, {"error": "range longer than 32 days"}
            return 200, {"data": self._points(region, start, end), "meta": self._meta(region)}
        return 404, {"error": f"no route {seen.path}"}


class UkGridServer(FakeProvider):
    """UK Carbon Intensity API: /intensity, /intensity/{from}/{to} (max 14 d), /fw24h, /fw48h."""

    STEP = timedelta(minutes=30)
    MAX_RANGE = timedelta(days=14)

    def __init__(self) -> None:
        super().__init__()
        #: Periods (by start) whose actual is withheld (null) even though past.
        self.missing_actual: set[datetime] = set()

    def _period(self, start: datetime, now: datetime) -> dict[str, Any]:
        value = true_intensity("GB", start)
        past = start + self.STEP <= now
        actual = value if past and start not in self.missing_actual else None
        return {
            "from": start.strftime("%Y-%m-%dT%H:%MZ"),
            "to": (start + self.STEP).strftime("%Y-%m-%dT%H:%MZ"),
            "intensity": {
                "forecast": round(value * 1.05, 3),
                "actual": actual,
                "index": "moderate",
            },
        }

    def _periods(self, start: datetime, end: datetime) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        t = floor_to(start, self.STEP) - self.STEP  # the API also returns the period ending at from
        periods = []
        while t < end:
            periods.append(self._period(t, now))
            t += self.STEP
        return periods

    def route(self, seen: Seen) -> tuple[int, Any]:
        parts = [p for p in seen.path.split("/") if p]
        now = datetime.now(UTC)
        if parts == ["intensity"]:
            return 200, {"data": [self._period(floor_to(now, self.STEP), now)]}
        if len(parts) == 3 and parts[0] == "intensity":
            start = parse_iso(parts[1])
            if parts[2] in ("fw24h", "fw48h"):
                hours = 24 if parts[2] == "fw24h" else 48
                first = floor_to(start, self.STEP)
                return 200, {
                    "data": self._periods(first + self.STEP, start + timedelta(hours=hours))
                }
            end = parse_iso(parts[2])
            if end - start > self.MAX_RANGE:
                return 400, {
                    "error": {
                        "code": "400 Bad Request",
                        "message": "date range must not exceed 14 days",
                    }
                }
            return 200, {"data": self._periods(start, end)}
        return 400, {"error": {"code": "400 Bad Request", "message": f"bad path {seen.path}"}}


class CarbonAwareServer(FakeProvider):
    """Carbon Aware SDK WebAPI: emissions by location(s), current forecasts.

    As the real SDK does, it answers with its backing provider's own region name where
    :attr:`backend_names` maps the location asked for (a WattTime backend renames them), and
    refuses (400) a forecast window whose ``dataEndAt`` lies past the forecast it holds.
    """

    def __init__(self) -> None:
        super().__init__()
        #: location asked for -> name the SDK's backing provider answers with
        self.backend_names: dict[str, str] = {}
        #: Length of the forecast the SDK holds.
        self.forecast_hours = 24

    KNOWN = frozenset(
        {
            "westus",
            "eastus",
            "uksouth",
            "germanywestcentral",
            "koreacentral",
            "japaneast",
            "francecentral",
            "westeurope",
        }
    )

    def _emissions(self, location: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        hour = timedelta(hours=1)
        t = floor_to(start, hour)
        t = t if t >= start else t + hour
        out = []
        while t <= end:
            out.append(
                {
                    "location": self.backend_names.get(location, location),
                    "time": iso_z(t),
                    "rating": true_intensity(location, t),
                    "duration": "01:00:00",
                }
            )
            t += hour
        return out

    def route(self, seen: Seen) -> tuple[int, Any]:
        locations = seen.query.get("location", [])
        unknown = [loc for loc in locations if loc not in self.KNOWN]
        if not locations or unknown:
            return 400, {
                "title": "ArgumentException",
                "status": 400,
                "detail": f"unknown location(s) {unknown}",
            }
        now = datetime.now(UTC)
        if seen.path in ("/emissions/bylocation", "/emissions/bylocations"):
            start = parse_iso(_one(seen, "time") or iso_z(now - timedelta(hours=1)))
            end = parse_iso(_one(seen, "toTime") or iso_z(now))
            items = [e for loc in locations for e in self._emissions(loc, start, end)]
            return 200, items
        if seen.path == "/emissions/forecasts/current":
            location = locations[0]
            step = timedelta(minutes=5)
            start = floor_to(now, step)
            end = start + timedelta(hours=self.forecast_hours)
            asked_end = _one(seen, "dataEndAt")
            if asked_end is not None and parse_iso(asked_end) > end:
                return 400, {
                    "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
                    "title": "ArgumentException",
                    "status": 400,
                    "detail": f"Requested dataEndAt {asked_end} is after the forecast's end "
                    f"{iso_z(end)}",
                }
            data = []
            t = start
            while t < end:
                data.append(
                    {
                        "location": location,
                        "timestamp": iso_z(t),
                        "duration": 5,
                        "value": true_intensity(location, t),
                    }
                )
                t += step
            best = min(data, key=lambda d: d["value"])
            return 200, [
                {
                    "generatedAt": iso_z(now),
                    "requestedAt": iso_z(now),
                    "location": location,
                    "dataStartAt": iso_z(start),
                    "dataEndAt": iso_z(end),
                    "windowSize": 0,
                    "optimalDataPoints": [best],
                    "forecastData": data,
                }
            ]
        return 404, {"title": "Not Found", "status": 404}
