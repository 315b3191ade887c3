"""Electricity Maps v3 client against a local server speaking its format."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from caftm.errors import AuthError, ProviderError
from caftm.signals.base import Basis, IntensitySource, Kind
from caftm.signals.electricitymaps import ElectricityMapsSource
from caftm.signals.http import RetryPolicy

from .conformance import FAST, LiveProviderConformance
from .servers import ElectricityMapsServer, FakeProvider, Fault, floor_to, true_intensity

TOKEN = "em-secret-token-5f1c9a"


class TestElectricityMapsConformance(LiveProviderConformance):
    zone = "DE"
    secret = TOKEN

    @pytest.fixture
    def server(self) -> Iterator[FakeProvider]:
        with ElectricityMapsServer(TOKEN) as server:
            yield server

    def make_source(self, server: FakeProvider, policy: RetryPolicy) -> IntensitySource:
        return ElectricityMapsSource(token=TOKEN, base_url=server.url, policy=policy)


@pytest.fixture
def server() -> Iterator[ElectricityMapsServer]:
    with ElectricityMapsServer(TOKEN) as server:
        yield server


@pytest.fixture
def source(server: ElectricityMapsServer) -> ElectricityMapsSource:
    return ElectricityMapsSource(token=TOKEN, base_url=server.url, policy=FAST)


def test_latest_matches_the_provider_and_sends_the_token(
    server: ElectricityMapsServer, source: ElectricityMapsSource
) -> None:
    reading = source.intensity("JP-TK")
    assert reading.intensity_g_per_kwh == pytest.approx(true_intensity("JP-TK", reading.time))
    assert reading.time == floor_to(datetime.now(UTC), timedelta(hours=1))
    assert (reading.kind, reading.basis, reading.source) == (
        Kind.ESTIMATED,
        Basis.LIFECYCLE,
        "electricitymaps",
    )
    assert server.seen[-1].headers["auth-token"] == TOKEN
    assert server.seen[-1].query["zone"] == ["JP-TK"]


@pytest.mark.parametrize("basis", [Basis.LIFECYCLE, Basis.DIRECT])
def test_the_configured_basis_is_asked_for_and_labelled(
    server: ElectricityMapsServer, basis: Basis
) -> None:
    source = ElectricityMapsSource(token=TOKEN, base_url=server.url, basis=basis, policy=FAST)
    now = datetime.now(UTC)
    readings = [
        source.latest("DE"),
        *source.history("DE", now - timedelta(hours=3), now),
        *source.history("DE", now - timedelta(days=5), now - timedelta(days=4, hours=21)),
        *source.forecast("DE", now, timedelta(hours=3)),
    ]
    assert len(readings) >= 10 and {r.basis for r in readings} == {basis}
    for r in readings:  # the fake's direct values are 80 % of its lifecycle ones
        assert r.intensity_g_per_kwh == pytest.approx(true_intensity("DE", r.time, basis.value))
    assert {s.path.rsplit("/", 1)[1] for s in server.seen} == {
        "latest", "history", "past-range", "forecast"
    }  # fmt: skip
    assert all(s.query["emissionFactorType"] == [basis.value] for s in server.seen)
    other = Basis.DIRECT if basis is Basis.LIFECYCLE else Basis.LIFECYCLE
    stated = {"zone": "DE", "carbonIntensity": 100, "datetime": "2024-01-01T00:00:00.000Z"}
    server.fail(Fault(200, {**stated, "emissionFactorType": other.value}))
    assert source.latest("DE").basis is other  # an answer that states its basis is taken at it


def test_long_past_range_is_split_into_ten_day_chunks(
    server: ElectricityMapsServer, source: ElectricityMapsSource
) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    end = start + timedelta(days=25)
    readings = source.history("FR", start, end)
    assert len(readings) == 25 * 24
    assert [r.time for r in readings] == [start + timedelta(hours=h) for h in range(25 * 24)]
    for r in readings[::97]:
        assert r.intensity_g_per_kwh == pytest.approx(true_intensity("FR", r.time))
        assert r.kind is Kind.MEASURED
    calls = [s for s in server.seen if s.path.endswith("/past-range")]
    assert len(calls) == 3  # 10 + 10 + 5 days; the server refuses > 10 days


def test_recent_history_uses_the_24h_endpoint(
    server: ElectricityMapsServer, source: ElectricityMapsSource
) -> None:
    now = datetime.now(UTC)
    readings = source.history("DE", now - timedelta(hours=6), now)
    assert 5 <= len(readings) <= 6
    assert server.paths() == ["/v3/carbon-intensity/history"]


def test_forecast_is_the_providers(
    server: ElectricityMapsServer, source: ElectricityMapsSource
) -> None:
    now = datetime.now(UTC)
    readings = source.forecast("KR", now, timedelta(hours=12))
    assert 12 <= len(readings) <= 13
    assert all(r.kind is Kind.FORECAST for r in readings)
    assert readings[0].time <= now < readings[0].time + timedelta(hours=1)
    for r in readings:
        assert r.intensity_g_per_kwh == pytest.approx(true_intensity("KR", r.time))


def test_absurd_value_is_a_provider_error_naming_zone(
    server: ElectricityMapsServer, source: ElectricityMapsSource
) -> None:
    body = {"zone": "DE", "carbonIntensity": 99999, "datetime": "2024-01-01T00:00:00.000Z"}
    server.fail(Fault(200, body))
    with pytest.raises(ProviderError, match=r"electricitymaps.*implausible.*zone DE"):
        source.intensity("DE")
    server.fail(Fault(200, {**body, "carbonIntensity": -3}))
    with pytest.raises(ProviderError, match="zone DE"):
        source.intensity("DE")


def test_missing_token_is_auth_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    for name in ("CAFTM_ELECTRICITYMAPS_TOKEN", "ELECTRICITYMAPS_TOKEN", "ELECTRICITYMAPS_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CAFTM_CONFIG", str(tmp_path) + "/absent.toml")
    with pytest.raises(AuthError, match="CAFTM_ELECTRICITYMAPS_TOKEN"):
        ElectricityMapsSource()


def test_token_from_environment_reaches_the_server_but_not_logs(
    server: ElectricityMapsServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", TOKEN)
    source = ElectricityMapsSource(base_url=server.url, policy=FAST)
    server.fail(Fault(500, {"echo": TOKEN}), Fault(400, {"message": f"bad request {TOKEN}"}))
    with pytest.raises(ProviderError) as info:
        source.intensity("DE")
    assert TOKEN not in str(info.value) and "***" in str(info.value)
    assert TOKEN not in caplog.text and TOKEN not in repr(source)
