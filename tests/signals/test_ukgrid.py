"""UK Carbon Intensity API client against a local server speaking its format."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from caftm.errors import ProviderError
from caftm.signals.base import Basis, IntensitySource, Kind
from caftm.signals.http import RetryPolicy
from caftm.signals.ukgrid import UkGridSource

from .conformance import FAST, LiveProviderConformance
from .servers import FakeProvider, Fault, UkGridServer, floor_to, true_intensity


class TestUkGridConformance(LiveProviderConformance):
    zone = "GB"
    unknown_zone = "DE"
    step = timedelta(minutes=30)

    @pytest.fixture
    def server(self) -> Iterator[FakeProvider]:
        with UkGridServer() as server:
            yield server

    def make_source(self, server: FakeProvider, policy: RetryPolicy) -> IntensitySource:
        return UkGridSource(base_url=server.url, policy=policy)


@pytest.fixture
def server() -> Iterator[UkGridServer]:
    with UkGridServer() as server:
        yield server


@pytest.fixture
def source(server: UkGridServer) -> UkGridSource:
    return UkGridSource(base_url=server.url, policy=FAST)


def test_history_prefers_actual_and_falls_back_to_forecast(
    server: UkGridServer, source: UkGridSource
) -> None:
    start = datetime(2022, 1, 1, tzinfo=UTC)
    server.missing_actual.add(start + timedelta(hours=1))
    readings = source.history("GB", start, start + timedelta(hours=3))
    assert [r.time for r in readings] == [start + timedelta(minutes=30 * k) for k in range(6)]
    assert server.paths() == ["/intensity/2022-01-01T00:00Z/2022-01-01T03:00Z"]
    for r in readings:
        truth = true_intensity("GB", r.time)
        assert r.basis is Basis.DIRECT and r.source == "ukgrid"
        if r.time == start + timedelta(hours=1):  # actual null: the forecast, marked estimated
            assert r.kind is Kind.ESTIMATED
            assert r.intensity_g_per_kwh == pytest.approx(truth * 1.05)
        else:
            assert r.kind is Kind.MEASURED
            assert r.intensity_g_per_kwh == pytest.approx(truth)


def test_a_period_without_actual_is_estimated_when_past_and_forecast_when_future(
    server: UkGridServer, source: UkGridSource
) -> None:
    now = datetime.now(UTC)
    half_hour = timedelta(minutes=30)
    current = floor_to(now, half_hour)
    server.missing_actual.add(current - 2 * half_hour)  # past, but its actual is withheld
    readings = source.history("GB", current - 3 * half_hour, current + 4 * half_hour)
    kinds = {r.time: r.kind for r in readings}
    assert kinds == {
        current - 3 * half_hour: Kind.MEASURED,
        current - 2 * half_hour: Kind.ESTIMATED,
        current - half_hour: Kind.MEASURED,
        current: Kind.ESTIMATED,  # in force now: no actual yet
        **{current + k * half_hour: Kind.FORECAST for k in (1, 2, 3)},
    }
    for r in readings:
        factor = 1.0 if r.kind is Kind.MEASURED else 1.05  # the fake forecasts 5 % high
        assert r.intensity_g_per_kwh == pytest.approx(
            true_intensity("GB", r.time) * factor, abs=1e-3
        )
    ahead = source.intensity("GB", now + timedelta(hours=3))
    assert ahead.kind is Kind.FORECAST and ahead.time > now


def test_ranges_longer_than_14_days_are_split(server: UkGridServer, source: UkGridSource) -> None:
    start = datetime(2022, 3, 1, tzinfo=UTC)
    readings = source.history("GB", start, start + timedelta(days=30))
    assert len(readings) == 30 * 48
    assert len(server.seen) == 3  # 14 + 14 + 2 days; the server refuses more than 14


def test_current_half_hour_has_no_actual_yet(source: UkGridSource) -> None:
    reading = source.intensity("GB")
    assert reading.kind is Kind.ESTIMATED
    assert reading.time <= datetime.now(UTC) < reading.time + timedelta(minutes=30)


def test_forecast_uses_fw24h_or_fw48h(server: UkGridServer, source: UkGridSource) -> None:
    now = datetime.now(UTC)
    readings = source.forecast("GB", now, timedelta(hours=24))
    assert 48 <= len(readings) <= 49  # the half-hour in force now, then 24 h ahead
    assert all(r.kind is Kind.FORECAST for r in readings)
    assert server.seen[-1].path.endswith("/fw24h")
    source.forecast("GB", now, timedelta(hours=36))
    assert server.seen[-1].path.endswith("/fw48h")


def test_null_forecast_and_actual_is_provider_error(
    server: UkGridServer, source: UkGridSource
) -> None:
    period = {
        "from": "2022-01-01T00:00Z",
        "to": "2022-01-01T00:30Z",
        "intensity": {"forecast": None, "actual": None, "index": "low"},
    }
    server.fail(Fault(200, {"data": [period]}))
    with pytest.raises(ProviderError, match=r"ukgrid.*zone GB"):
        source.intensity("GB")


def test_a_horizon_past_48_h_is_clamped_and_said() -> None:
    with UkGridServer() as server:
        source = UkGridSource(base_url=server.url, policy=FAST)
        readings = source.forecast("GB", None, timedelta(hours=72))
        assert readings[-1].time - readings[0].time <= timedelta(hours=48)
        assert source.take_notes() == ["ukgrid forecasts at most 48 h: 72 h asked for, 48 h shown"]
