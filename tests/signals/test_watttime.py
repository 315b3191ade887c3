"""WattTime v3 client against a local server speaking its format."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from caftm.errors import AuthError, ConfigError, ProviderError
from caftm.signals.base import Basis, IntensitySource, Kind
from caftm.signals.http import RetryPolicy
from caftm.signals.watttime import G_PER_KWH_PER_LBS_PER_MWH, WattTimeSource

from .conformance import FAST, LiveProviderConformance
from .servers import FakeProvider, Fault, WattTimeServer, true_intensity

USER = "caftm-user"
PASSWORD = "wt-pass-93ab71e"


class TestWattTimeConformance(LiveProviderConformance):
    zone = "US-CAL-CISO"
    unknown_zone = "Atlantis"
    secret = PASSWORD
    step = timedelta(minutes=5)

    @pytest.fixture
    def server(self) -> Iterator[FakeProvider]:
        with WattTimeServer(USER, PASSWORD) as server:
            yield server

    def make_source(self, server: FakeProvider, policy: RetryPolicy) -> IntensitySource:
        return WattTimeSource(username=USER, password=PASSWORD, base_url=server.url, policy=policy)


@pytest.fixture
def server() -> Iterator[WattTimeServer]:
    with WattTimeServer(USER, PASSWORD) as server:
        yield server


@pytest.fixture
def source(server: WattTimeServer) -> WattTimeSource:
    return WattTimeSource(username=USER, password=PASSWORD, base_url=server.url, policy=FAST)


def test_moer_is_converted_from_lbs_per_mwh(server: WattTimeServer, source: WattTimeSource) -> None:
    start = datetime(2024, 3, 1, tzinfo=UTC)
    readings = source.history("US-CAL-CISO", start, start + timedelta(hours=2))
    assert len(readings) == 24
    for r in readings:
        # the server sends lbs/MWh = truth / 0.453592; the client must give back the truth
        assert r.intensity_g_per_kwh == pytest.approx(true_intensity("CAISO_NORTH", r.time))
        assert (r.basis, r.kind, r.source) == (Basis.DIRECT, Kind.ESTIMATED, "watttime")
    assert abs(G_PER_KWH_PER_LBS_PER_MWH - 0.45359237) < 1e-5
    assert server.seen[0].path == "/login"
    assert server.seen[1].query["region"] == ["CAISO_NORTH"]
    assert server.seen[1].headers["authorization"].startswith("Bearer ")


def test_long_history_is_chunked(server: WattTimeServer) -> None:
    source = WattTimeSource(
        username=USER,
        password=PASSWORD,
        base_url=server.url,
        policy=FAST,
        historical_max=timedelta(days=1),
    )
    start = datetime(2024, 3, 1, tzinfo=UTC)
    readings = source.history("CAISO_NORTH", start, start + timedelta(days=3))
    assert len(readings) == 3 * 24 * 12
    assert sum(s.path == "/v3/historical" for s in server.seen) == 3
    assert server.logins == 1  # one token serves every chunk


def test_expired_token_triggers_one_relogin(server: WattTimeServer, source: WattTimeSource) -> None:
    source.intensity("US-CAL-CISO")
    server.revoke_tokens()
    reading = source.intensity("US-CAL-CISO")
    assert reading.intensity_g_per_kwh == pytest.approx(true_intensity("CAISO_NORTH", reading.time))
    assert server.logins == 2


def test_token_is_renewed_before_thirty_minutes(server: WattTimeServer) -> None:
    clock = [1000.0]
    source = WattTimeSource(
        username=USER, password=PASSWORD, base_url=server.url, policy=FAST, clock=lambda: clock[0]
    )
    source.intensity("US-CAL-CISO")
    clock[0] += 10 * 60
    source.intensity("US-CAL-CISO")
    assert server.logins == 1
    clock[0] += 20 * 60
    source.intensity("US-CAL-CISO")
    assert server.logins == 2


def test_wrong_password_is_auth_error_without_password(
    server: WattTimeServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    source = WattTimeSource(username=USER, password="wrong-9d8c7b", base_url=server.url)
    with pytest.raises(AuthError, match="CAFTM_WATTTIME_USERNAME") as info:
        source.intensity("US-CAL-CISO")
    assert "wrong-9d8c7b" not in str(info.value) and "wrong-9d8c7b" not in caplog.text


def test_signal_index_is_a_percentile_not_an_intensity(
    server: WattTimeServer, source: WattTimeSource
) -> None:
    index = source.signal_index("US-CAL-CISO")
    assert index.percentile == 37.0 and index.region == "CAISO_NORTH"
    assert not hasattr(index, "intensity_g_per_kwh")


def test_forecast_is_converted_and_limited_to_horizon(source: WattTimeSource) -> None:
    now = datetime.now(UTC)
    readings = source.forecast("US-CAL-CISO", now, timedelta(hours=1))
    assert 12 <= len(readings) <= 13
    assert all(r.kind is Kind.FORECAST for r in readings)
    assert readings[-1].time < now + timedelta(hours=1)
    for r in readings:
        assert r.intensity_g_per_kwh == pytest.approx(true_intensity("CAISO_NORTH", r.time))


def test_region_override_and_mapping(server: WattTimeServer) -> None:
    source = WattTimeSource(
        username=USER, password=PASSWORD, base_url=server.url, policy=FAST, region="PJM_DC"
    )
    reading = source.intensity("anything")
    assert reading.zone == "anything"
    assert server.seen[-1].query["region"] == ["PJM_DC"]
    mapped = WattTimeSource(
        username=USER, password=PASSWORD, base_url=server.url, regions={"XX": "MY_REGION"}
    )
    assert mapped.region_for("XX") == "MY_REGION"
    with pytest.raises(ConfigError, match="no WattTime region"):
        mapped.region_for("zz")


def test_absurd_value_is_provider_error(server: WattTimeServer, source: WattTimeSource) -> None:
    source.intensity("US-CAL-CISO")  # log in first
    body = {
        "data": [{"point_time": "2024-01-01T00:00:00Z", "value": 9000.0}],
        "meta": {"units": "lbs_co2_per_mwh"},
    }
    server.fail(Fault(200, body))
    with pytest.raises(ProviderError, match=r"watttime.*implausible.*US-CAL-CISO"):
        source.intensity("US-CAL-CISO")
