"""Shared HTTP plumbing for the live carbon-intensity providers.

One :class:`JsonClient` per provider: a sync :class:`httpx.Client` with a timeout on every call,
retries with exponential backoff and jitter on 429, 5xx and connection errors (honouring
``Retry-After`` in seconds or as an HTTP date, capped), and one translation of every foreign error
into :class:`~caftm.errors.ProviderError` / :class:`~caftm.errors.AuthError`. Messages name the
provider and the URL path, never a key: any secret handed to the client is redacted from them.
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from pydantic import SecretStr

from caftm.errors import AuthError, ConfigError, ProviderError
from caftm.signals.base import Basis, IntensitySource, Kind, Reading, as_utc, check_intensity

logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: How many of a series' own steps a reading "in force" may be old before it is refused as stale.
STALE_STEPS = 2


class AccessDeniedError(AuthError):
    """HTTP 403: the provider refuses this request for this key (often: the zone or signal is
    not in the key's plan). Retrying, or logging in again, cannot help."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one request.

    Attributes:
        timeout_s: Per-attempt timeout (connect, read, write, pool), seconds.
        max_retries: Retries after the first attempt on 429/5xx/connection errors.
        backoff_base_s: First backoff; doubles per retry, with up to 50% random jitter.
        backoff_max_s: Ceiling of one computed backoff.
        retry_after_cap_s: Ceiling of a server's ``Retry-After`` we are willing to honour.
        deadline_s: Ceiling of the whole call, retries and waits included.
        clock: Monotonic seconds that the deadline is measured on.
        sleep: Waits out a backoff (tests pass a virtual clock's, so retries take no time).
    """

    timeout_s: float = 10.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    retry_after_cap_s: float = 30.0
    deadline_s: float = 60.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)


def retry_after_s(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class JsonClient:
    """GET JSON from one provider, with timeouts, retries and error translation.

    Args:
        provider: Provider name used in messages (``"electricitymaps"``).
        base_url: Root URL; tests point it at ``http://127.0.0.1:PORT``.
        auth_hint: What to do about a 401/403 (``"set CAFTM_ELECTRICITYMAPS_TOKEN"``).
        policy: Timeouts and retries.
        headers: Headers sent on every request (e.g. an auth header).
        secrets: Values to redact from any message (the key itself).
        transport: Optional httpx transport (for custom networking; tests use real servers).
    """

    def __init__(
        self,
        provider: str,
        base_url: str,
        *,
        auth_hint: str,
        policy: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        secrets: Iterable[SecretStr | str | None] = (),
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base URL {base_url!r} for {provider} must start with http(s)://")
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.auth_hint = auth_hint
        self.policy = policy or RetryPolicy()
        self._secrets = [
            s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets if s
        ]
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=dict(headers or {}),
            timeout=httpx.Timeout(self.policy.timeout_s),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"JsonClient(provider={self.provider!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._client.close()

    def add_secret(self, secret: SecretStr | str) -> None:
        """Redact ``secret`` from every later message (e.g. a freshly issued token)."""
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        if value:
            self._secrets.append(value)

    def redact(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def get_json(
        self,
        path: str,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
    ) -> Any:
        """GET ``path`` and return its decoded JSON body.

        Returns:
            The decoded body; None for HTTP 204 No Content (an empty result).

        Raises:
            AuthError: HTTP 401 (:class:`AccessDeniedError` for 403, with what the provider
                said: it is not retried).
            ProviderError: timeout, connection failure after retries, other HTTP error,
                or a body that is not JSON.
        """
        policy = self.policy
        started = policy.clock()
        attempt = 0
        while True:
            try:
                response = self._client.get(path, params=params, headers=headers, auth=auth)
            except httpx.TimeoutException as e:
                raise ProviderError(
                    f"{self.provider} did not answer within the {policy.timeout_s:g} s timeout "
                    f"at {path}; try again later or raise the timeout"
                ) from e
            except httpx.TransportError as e:
                wait_s = self._backoff_s(attempt, None)
                if not self._may_retry(attempt, started, wait_s):
                    raise ProviderError(
                        f"cannot reach {self.provider} at {self.base_url}{path}: "
                        f"{self.redact(type(e).__name__ + ': ' + str(e))}; check the network "
                        "or the base URL"
                    ) from e
                logger.warning(
                    "%s: %s at %s; retry %d in %.2f s",
                    self.provider,
                    type(e).__name__,
                    path,
                    attempt + 1,
                    wait_s,
                )
            else:
                if response.status_code < 400:
                    return self._decode(response, path)
                if response.status_code == 401:
                    raise AuthError(
                        f"missing/invalid/expired key for {self.provider} "
                        f"(HTTP 401 at {path}): {self.auth_hint}; the provider said: "
                        f"{self._detail(response)}"
                    )
                if response.status_code == 403:
                    raise AccessDeniedError(
                        f"{self.provider} refused the request (HTTP 403 at {path}): "
                        f"{self._detail(response)}; "
                        "this zone or signal may not be in your plan (ask the provider), "
                        f"or the key is wrong ({self.auth_hint})"
                    )
                if response.status_code not in RETRY_STATUSES:
                    raise ProviderError(
                        f"{self.provider} answered HTTP {response.status_code} at {path}: "
                        f"{self._detail(response)}"
                    )
                wait_s = self._backoff_s(attempt, response.headers.get("retry-after"))
                if not self._may_retry(attempt, started, wait_s):
                    raise ProviderError(
                        f"{self.provider} answered HTTP {response.status_code} at {path} "
                        f"after {attempt + 1} attempt(s); try again later"
                    )
                logger.warning(
                    "%s: HTTP %d at %s; retry %d in %.2f s",
                    self.provider,
                    response.status_code,
                    path,
                    attempt + 1,
                    wait_s,
                )
            policy.sleep(wait_s)
            attempt += 1

    def _backoff_s(self, attempt: int, retry_after: str | None) -> float:
        told_s = retry_after_s(retry_after)
        if told_s is not None:
            return min(told_s, self.policy.retry_after_cap_s)
        base_s = min(self.policy.backoff_base_s * 2.0**attempt, self.policy.backoff_max_s)
        return base_s * (1.0 + 0.5 * random.random())

    def _may_retry(self, attempt: int, started: float, wait_s: float) -> bool:
        if attempt >= self.policy.max_retries:
            return False
        spent_s = self.policy.clock() - started
        return spent_s + wait_s < self.policy.deadline_s

    def _decode(self, response: httpx.Response, path: str) -> Any:
        if response.status_code == 204:
            return None
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if "json" not in content_type:
            raise ProviderError(
                f"provider {self.provider} answered with non-JSON ({content_type or 'no type'}) "
                f"at {path}; check the base URL {self.base_url}"
            )
        try:
            return response.json()
        except ValueError as e:
            raise ProviderError(
                f"provider {self.provider} answered with non-JSON (malformed {content_type}) "
                f"at {path}"
            ) from e

    def _detail(self, response: httpx.Response) -> str:
        """What the provider said: the message of a JSON error body, else the body's start."""
        text = response.text.strip().replace("\n", " ")
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            said = [
                str(body[key])
                for key in ("message", "error", "detail", "title")
                if isinstance(body.get(key), str) and body[key].strip()
            ]
            if said:
                text = "; ".join(dict.fromkeys(said))
        return self.redact(text[:300]) or "(empty body)"


def iso_z(time: datetime) -> str:
    """``time`` in UTC as ``YYYY-MM-DDTHH:MM:SSZ``, the form the providers' queries take."""
    return as_utc(time).strftime("%Y-%m-%dT%H:%M:%SZ")


def chunked(
    start: datetime, end: datetime, max_span: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    """Consecutive ``(chunk_start, chunk_end)`` covering ``[start, end)``, none over ``max_span``.

    Raises:
        ConfigError: ``max_span`` is not positive (the split would never end).
    """
    if max_span <= timedelta(0):
        raise ConfigError(f"the longest range per provider call must be positive, got {max_span}")
    chunk_start = start
    while chunk_start < end:
        chunk_end = min(chunk_start + max_span, end)
        yield chunk_start, chunk_end
        chunk_start = chunk_end


def unique_in_range(readings: Iterable[Reading], start: datetime, end: datetime) -> list[Reading]:
    """Readings timed in ``[start, end)``, one per time (the last given wins), oldest first."""
    unique = {r.time: r for r in readings if start <= r.time < end}
    return [unique[t] for t in sorted(unique)]


def parse_utc(value: Any, *, provider: str, what: str = "time") -> datetime:
    """Parse a provider's ISO-8601 timestamp into aware UTC (a naive one is taken as UTC).

    Raises:
        ProviderError: not a parseable timestamp.
    """
    if not isinstance(value, str):
        raise ProviderError(f"{provider} gave a {what} that is not a string: {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as e:
        raise ProviderError(f"{provider} gave an unparseable {what} {value!r}") from e
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def provider_reading(
    *,
    provider: str,
    zone: str,
    time: datetime,
    value: Any,
    basis: Basis,
    kind: Kind,
) -> Reading:
    """Build a validated :class:`Reading` from a provider's value in gCO2eq/kWh.

    Raises:
        ProviderError: the value is missing, not a number, negative or absurd.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProviderError(
            f"{provider} gave a non-numeric intensity {value!r} for zone {zone} at "
            f"{time.isoformat()}"
        )
    try:
        intensity = check_intensity(float(value), where=f"{provider} zone {zone}")
    except ConfigError as e:
        raise ProviderError(
            f"{provider} gave an implausible intensity {value!r} gCO2eq/kWh for zone {zone} at "
            f"{time.isoformat()}; the provider's data is suspect"
        ) from e
    return Reading(zone, time, intensity, basis, kind, provider)


def pick_in_force(readings: list[Reading], at: datetime) -> Reading | None:
    """The latest reading whose time is at or before ``at`` (readings sorted oldest first)."""
    chosen: Reading | None = None
    for reading in readings:
        if reading.time <= at:
            chosen = reading
        else:
            break
    return chosen


def series_step(readings: list[Reading], default: timedelta = timedelta(hours=1)) -> timedelta:
    """The usual spacing of ``readings`` (oldest first): the smallest positive gap, else
    ``default``."""
    gaps = [b.time - a.time for a, b in itertools.pairwise(readings)]
    positive = [g for g in gaps if g > timedelta(0)]
    return min(positive) if positive else default


def fresh_in_force(
    readings: list[Reading], at: datetime, *, provider: str, zone: str, what: str = "forecast"
) -> Reading | None:
    """The reading in force at ``at`` (see :func:`pick_in_force`), refused when it is older than
    :data:`STALE_STEPS` of the series' own step (a provider that stopped updating).

    Raises:
        ProviderError: the newest reading at or before ``at`` is stale.
    """
    found = pick_in_force(readings, at)
    if found is None:
        return None
    step = series_step(readings)
    if at - found.time > STALE_STEPS * step:
        hours = (at - found.time).total_seconds() / 3600.0
        raise ProviderError(
            f"{provider} {what} for zone {zone} is stale: its newest point at or before "
            f"{iso_z(at)} is from {iso_z(found.time)}, {hours:.1f} h earlier (more than "
            f"{STALE_STEPS} of its {step.total_seconds() / 60:g}-minute steps); the provider "
            "may be in an outage"
        )
    return found


def forecast_window(
    readings: list[Reading], begin: datetime, horizon: timedelta, *, provider: str, zone: str
) -> list[Reading]:
    """Forecast ``readings`` (oldest first) in ``[begin, begin + horizon)``, plus the one in force
    at ``begin`` (a slot that started before it).

    Raises:
        ProviderError: the forecast has nothing from ``begin`` on and its last point is stale
            (older than :data:`STALE_STEPS` steps before ``begin``).
    """
    first = fresh_in_force(readings, begin, provider=provider, zone=zone)
    return [r for r in readings if (r.time >= begin or r is first) and r.time < begin + horizon]


def mapped_name(
    zone: str,
    mapping: Mapping[str, str],
    *,
    override: str | None,
    looks_native: Callable[[str], bool],
    what: str,
    example: str,
) -> str:
    """The provider's own name for ``zone``: ``override`` when set, else ``mapping[zone]``, else
    ``zone`` itself when it already looks like such a name (``looks_native``).

    Args:
        what: what the provider calls it, for the message ("WattTime region").
        example: the option as a user would pass it, for the message ("region='CAISO_NORTH'").

    Raises:
        ConfigError: none of these applies; the message lists the mapped zones.
    """
    if override:
        return override
    if zone in mapping:
        return mapping[zone]
    if zone and looks_native(zone):
        return zone
    native = example.partition("=")[2].strip("'\"") or example
    raise ConfigError(
        f"zone {zone!r} has no {what}; give the {what} itself as the zone (e.g. {native}), "
        f"map it with the source's option ({example}), or use one of the mapped zones: "
        f"{', '.join(sorted(mapping))}"
    )


class HttpSource(IntensitySource):
    """An intensity source answered by one provider's HTTP API through a :class:`JsonClient`."""

    _http: JsonClient

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._http.base_url!r})"

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()
