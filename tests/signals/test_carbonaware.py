"""Carbon Aware SDK WebAPI client against a local server speaking its format."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from caftm.errors import ConfigError, ProviderError
from caftm.signals.base import IntensitySource, Kind
from caftm.signals.carbonaware import CarbonAwareSource
from caftm.signals.http import RetryPolicy

from .conformance import FAST, LiveProviderConformance
from .servers import CarbonAwareServer, FakeProvider, Fault, true_intensity


class TestCarbonAwareConformance(LiveProviderConformance):
    zone = "DE"
    unknown_zone = "Not A Zone"

    @pytest.fixture
    def server(self) -> Iterator[FakeProvider]:
        with CarbonAwareServer() as server:
            yield server

    def make_source(self, server: FakeProvider, policy: RetryPolicy) -> IntensitySource:
        return CarbonAwareSource(base_url=server.url, policy=policy)


@pytest.fixture
def server() -> Iterator[CarbonAwareServer]:
    with CarbonAwareServer() as server:
        yield server


@pytest.fixture
def source(server: CarbonAwareServer) -> CarbonAwareSource:
    return CarbonAwareSource(base_url=server.url, policy=FAST)


def test_zone_is_mapped_to_an_sdk_location(
    server: CarbonAwareServer, source: CarbonAwareSource
) -> None:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    readings = source.history("KR", start, start + timedelta(hours=4))
    assert [r.time for r in readings] == [start + timedelta(hours=h) for h in range(4)]
    for r in readings:
        assert r.zone == "KR" and r.source == "carbonaware"
        assert r.kind is Kind.UNKNOWN  # the SDK does not say measured or estimated
        assert r.intensity_g_per_kwh == pytest.approx(true_intensity("koreacentral", r.time))
    query = server.seen[-1].query
    assert query["location"] == ["koreacentral"]
    assert query["time"] == ["2024-05-01T00:00:00Z"]
    assert query["toTime"] == ["2024-05-01T04:00:00Z"]


def test_location_for_override_native_names_and_unknown_zones(server: CarbonAwareServer) -> None:
    forced = CarbonAwareSource(base_url=server.url, policy=FAST, location="westeurope")
    assert forced.location_for("KR") == "westeurope"
    source = CarbonAwareSource(base_url=server.url, policy=FAST, locations={"XX": "eastasia"})
    assert source.location_for("XX") == "eastasia" and source.location_for("FR") == "francecentral"
    assert source.location_for("brazilsouth") == "brazilsouth"  # already an SDK location
    for zone in ("US-TEX-ERCO", "Brazil South", ""):
        with pytest.raises(ConfigError, match=r"no Carbon Aware SDK location.*mapped zones: CA-ON"):
            source.location_for(zone)


def test_several_locations_in_one_call(
    server: CarbonAwareServer, source: CarbonAwareSource
) -> None:
    start = datetime(2024, 5, 1, tzinfo=UTC)
    readings = source.history_many(["DE", "FR", "westeurope"], start, start + timedelta(hours=2))
    assert len(server.seen) == 1 and server.seen[0].path == "/emissions/bylocations"
    assert server.seen[0].query["location"] == ["germanywestcentral", "francecentral", "westeurope"]
    by_zone = {(r.zone, r.time): r.intensity_g_per_kwh for r in readings}
    assert len(by_zone) == 6
    assert by_zone[("FR", start)] == pytest.approx(true_intensity("francecentral", start))
    assert ("westeurope", start) in by_zone


def test_current_forecast_is_read_from_forecast_data(source: CarbonAwareSource) -> None:
    now = datetime.now(UTC)
    readings = source.forecast("GB", now, timedelta(hours=2))
    assert 24 <= len(readings) <= 25  # 5-minute points
    assert all(r.kind is Kind.FORECAST and r.zone == "GB" for r in readings)
    for r in readings:
        assert r.intensity_g_per_kwh == pytest.approx(true_intensity("uksouth", r.time))


def test_location_override(server: CarbonAwareServer) -> None:
    source = CarbonAwareSource(base_url=server.url, policy=FAST, location="eastus")
    reading = source.intensity("my-site")
    assert reading.zone == "my-site"
    assert server.seen[-1].query["location"] == ["eastus"]


def test_provider_rejecting_a_location_is_provider_error(
    server: CarbonAwareServer, source: CarbonAwareSource
) -> None:
    with pytest.raises(ProviderError, match="HTTP 400 at /emissions/bylocation"):
        source.intensity("atlantis")
    with pytest.raises(ConfigError, match="no Carbon Aware SDK location"):
        source.intensity("Not A Zone")


def test_empty_forecast_is_provider_error(
    server: CarbonAwareServer, source: CarbonAwareSource
) -> None:
    server.fail(Fault(200, []))
    with pytest.raises(ProviderError, match=r"forecast.*empty"):
        source.forecast("DE")
