"""FallbackChain: live -> cache -> earlier forecast -> embedded profile, with a deadline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from caftm.errors import ConfigError
from caftm.signals.base import IntensitySource, Kind, Reading, utcnow
from caftm.signals.cache import ReadingCache
from caftm.signals.chain import FallbackChain
from caftm.signals.electricitymaps import ElectricityMapsSource
from caftm.signals.http import RetryPolicy
from caftm.signals.profiles import ProfileSource

from .servers import ElectricityMapsServer, Fault, true_intensity

TOKEN = "em-chain-token-41d2"
NO_RETRY = RetryPolicy(timeout_s=5.0, max_retries=0)


@pytest.fixture
def server() -> Iterator[ElectricityMapsServer]:
    with ElectricityMapsServer(TOKEN) as server:
        yield server


@pytest.fixture
def cache(tmp_path: Path) -> ReadingCache:
    return ReadingCache(tmp_path / "signals.sqlite")


@pytest.fixture
def chain(server: ElectricityMapsServer, cache: ReadingCache) -> Iterator[FallbackChain]:
    live = ElectricityMapsSource(token=TOKEN, base_url=server.url, policy=NO_RETRY)
    chain = FallbackChain(live, cache=cache, last_resort=ProfileSource(), deadline_s=2.0)
    yield chain
    chain.close()


def outage(server: ElectricityMapsServer, calls: int = 5) -> None:
    server.fail(*[Fault(503, {"error": "down"}) for _ in range(calls)])


def test_live_answer_is_used_and_cached(chain: FallbackChain, cache: ReadingCache) -> None:
    reading = chain.intensity("DE")
    assert reading.source == "electricitymaps"
    assert reading.intensity_g_per_kwh == pytest.approx(true_intensity("DE", reading.time))
    stored = cache.get("electricitymaps", "DE", reading.time, reading.time + timedelta(hours=1))
    assert [c.reading.intensity_g_per_kwh for c in stored] == [reading.intensity_g_per_kwh]


def test_outage_falls_back_to_the_cache(
    chain: FallbackChain, server: ElectricityMapsServer
) -> None:
    live = chain.intensity("DE")
    outage(server)
    fallback = chain.intensity("DE")
    assert fallback.source == "cache:electricitymaps"
    assert fallback.intensity_g_per_kwh == live.intensity_g_per_kwh
    assert fallback.time == live.time


def test_without_observations_an_earlier_forecast_answers(
    chain: FallbackChain, server: ElectricityMapsServer
) -> None:
    later = utcnow() + timedelta(hours=5)
    planned = chain.forecast("DE", utcnow(), timedelta(hours=8))  # cached as FORECAST
    outage(server)
    reading = chain.intensity("DE", later)
    assert reading.source == "forecast:electricitymaps" and reading.kind is Kind.FORECAST
    expected = max((r for r in planned if r.time <= later), key=lambda r: r.time)
    assert reading.intensity_g_per_kwh == expected.intensity_g_per_kwh


def test_with_nothing_cached_the_profile_answers(
    chain: FallbackChain, server: ElectricityMapsServer
) -> None:
    outage(server)
    reading = chain.intensity("FR")
    assert "synthetic" in reading.source and reading.kind is Kind.SYNTHETIC
    assert reading == ProfileSource().intensity("FR", reading.time)


def test_cache_older_than_the_bound_is_not_used(
    server: ElectricityMapsServer, cache: ReadingCache
) -> None:
    live = ElectricityMapsSource(token=TOKEN, base_url=server.url, policy=NO_RETRY)
    chain = FallbackChain(live, cache=cache, last_resort=ProfileSource(), max_cache_age_s=3600)
    past = datetime(2024, 1, 1, tzinfo=UTC)
    chain.intensity("DE", past)  # cached at 2024-01-01T00:00
    outage(server, 10)
    assert chain.intensity("DE", past + timedelta(minutes=50)).source == "cache:electricitymaps"
    assert "synthetic" in chain.intensity("DE", past + timedelta(hours=3)).source
    chain.close()


def test_slow_provider_does_not_stall_past_the_deadline(
    server: ElectricityMapsServer, cache: ReadingCache
) -> None:
    live = ElectricityMapsSource(token=TOKEN, base_url=server.url, policy=NO_RETRY)
    chain = FallbackChain(live, cache=cache, last_resort=ProfileSource(), deadline_s=0.3)
    server.delay_s = 1.0
    began = time.monotonic()
    reading = chain.intensity("DE")
    assert time.monotonic() - began < 0.9
    assert "synthetic" in reading.source
    # the late live answer still lands in the cache for the next caller
    deadline = time.monotonic() + 5
    while cache.count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cache.count() == 1
    server.delay_s = 1.0
    assert chain.intensity("DE").source == "cache:electricitymaps"
    chain.close()


def test_history_and_forecast_fall_back(
    chain: FallbackChain, server: ElectricityMapsServer
) -> None:
    start = datetime(2024, 2, 1, tzinfo=UTC)
    end = start + timedelta(hours=6)
    live = chain.history("DE", start, end)
    outage(server, 10)
    cached = chain.history("DE", start, end)
    assert [r.intensity_g_per_kwh for r in cached] == [r.intensity_g_per_kwh for r in live]
    assert {r.source for r in cached} == {"cache:electricitymaps"}
    profile = chain.history("DE", start + timedelta(days=3), end + timedelta(days=3))
    assert len(profile) == 6 and all("synthetic" in r.source for r in profile)
    forecast = chain.forecast("DE", utcnow(), timedelta(hours=4))
    assert all(r.kind is Kind.FORECAST and "synthetic" in r.source for r in forecast)


def test_no_live_source_starts_at_the_cache(cache: ReadingCache) -> None:
    chain = FallbackChain(None, cache=cache, last_resort=ProfileSource())
    reading = chain.intensity("KR")
    assert "synthetic" in reading.source
    assert "KR" in chain.zones()
    chain.close()


def test_naive_time_is_refused_before_any_stage(chain: FallbackChain) -> None:
    with pytest.raises(ConfigError, match="no timezone"):
        chain.intensity("DE", datetime(2024, 1, 1))


def test_unknown_zone_everywhere_is_config_error(
    chain: FallbackChain, server: ElectricityMapsServer
) -> None:
    outage(server)
    with pytest.raises(ConfigError, match="NOT-A-ZONE"):
        chain.intensity("NOT-A-ZONE")


class HistoryOnly(IntensitySource):
    """A source with history but no native forecast (delegates to the embedded profile)."""

    name = "history-only"

    def __init__(self) -> None:
        self.profile = ProfileSource(seed=7)

    def zones(self) -> list[str]:
        return ["DE"]

    def intensity(self, zone: str, time: datetime | None = None) -> Reading:
        return self.profile.intensity(zone, time)

    def history(self, zone: str, start: datetime, end: datetime) -> list[Reading]:
        return self.profile.history(zone, start, end)


def test_live_without_forecast_gets_one_from_its_history(cache: ReadingCache) -> None:
    chain = FallbackChain(HistoryOnly(), cache=cache, last_resort=ProfileSource())
    start = datetime(2024, 6, 1, tzinfo=UTC)
    readings = chain.forecast("DE", start, timedelta(hours=6))
    assert len(readings) == 6
    assert all(r.kind is Kind.FORECAST and r.source.startswith("history-only") for r in readings)
    stored = cache.get("history-only", "DE", start, start + timedelta(hours=6))
    assert len(stored) == 6
    chain.close()
