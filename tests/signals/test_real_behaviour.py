"""Live providers as real services behave: nulls, relabelled zones, plan 403s, 204s, stale
forecasts, clamped horizons. Each case runs against the local servers with a real-shaped body."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from caftm.errors import AuthError, ConfigError, ProviderError
from caftm.signals.base import Kind
from caftm.signals.cache import ReadingCache
from caftm.signals.carbonaware import CarbonAwareSource
from caftm.signals.chain import FallbackChain
from caftm.signals.electricitymaps import ElectricityMapsSource
from caftm.signals.http import AccessDeniedError, RetryPolicy
from caftm.signals.profiles import ProfileSource
from caftm.signals.watttime import WattTimeSource

from .conformance import FAST
from .servers import (
    CarbonAwareServer,
    ElectricityMapsServer,
    Fault,
    WattTimeServer,
    floor_to,
    iso_z,
    true_intensity,
)

TOKEN = "em-real-token-7a2c"
USER = "caftm-user"
PASSWORD = "wt-real-pass-19fe"
NO_RETRY = RetryPolicy(timeout_s=5.0, max_retries=0)


@pytest.fixture
def em() -> Iterator[ElectricityMapsServer]:
    with ElectricityMapsServer(TOKEN) as server:
        yield server


@pytest.fixture
def wt() -> Iterator[WattTimeServer]:
    with WattTimeServer(USER, PASSWORD) as server:
        yield server


@pytest.fixture
def ca() -> Iterator[CarbonAwareServer]:
    with CarbonAwareServer() as server:
        yield server


def em_source(server: ElectricityMapsServer) -> ElectricityMapsSource:
    return ElectricityMapsSource(token=TOKEN, base_url=server.url, policy=FAST)


def em_history_with_nulls(zone: str, nulls: set[int]) -> dict[str, object]:
    """A /history answer as the API gives it when some hours have no value."""
    now_hour = floor_to(datetime.now(UTC), timedelta(hours=1))
    entries = []
    for k in range(24, -1, -1):
        t = now_hour - timedelta(hours=k)
        entries.append(
            {
                "zone": zone,
                "carbonIntensity": None if k in nulls else true_intensity(zone, t),
                "datetime": iso_z(t),
                "updatedAt": iso_z(now_hour),
                "createdAt": iso_z(t),
                "emissionFactorType": "lifecycle",
                "isEstimated": False if k not in nulls else None,
                "estimationMethod": None,
            }
        )
    return {"zone": zone, "history": entries}


# -- Electricity Maps --------------------------------------------------------------------------


def test_em_null_hours_are_gaps_and_the_real_values_are_kept(em: ElectricityMapsServer) -> None:
    source = em_source(em)
    em.fail(Fault(200, em_history_with_nulls("DE", {3, 4})))
    now = datetime.now(UTC)
    readings = source.history("DE", now - timedelta(hours=20), now)
    assert readings and all(r.source == "electricitymaps" for r in readings)
    for r in readings:
        assert r.intensity_g_per_kwh == pytest.approx(true_intensity("DE", r.time))
    notes = source.take_notes()
    assert len(notes) == 1 and "no value (null) for zone DE at 2 time(s)" in notes[0]
    assert "left out as gaps" in notes[0]


def test_em_null_hours_with_fallback_never_become_synthetic(
    em: ElectricityMapsServer, tmp_path: Path
) -> None:
    chain = FallbackChain(
        ElectricityMapsSource(token=TOKEN, base_url=em.url, policy=NO_RETRY),
        cache=ReadingCache(tmp_path / "c.sqlite"),
        last_resort=ProfileSource(),
        deadline_s=5.0,
    )
    try:
        em.fail(Fault(200, em_history_with_nulls("DE", {2})))
        now = datetime.now(UTC)
        readings = chain.history("DE", now - timedelta(hours=20), now)
    finally:
        chain.close()
    assert readings and {r.source for r in readings} == {"electricitymaps"}
    assert all(r.kind is not Kind.SYNTHETIC for r in readings)
    assert any("null" in n for n in chain.take_notes())


def test_em_latest_null_is_a_provider_error_not_a_crash(em: ElectricityMapsServer) -> None:
    body = {"zone": "DE", "carbonIntensity": None, "datetime": "2024-01-01T00:00:00.000Z"}
    em.fail(Fault(200, body))
    with pytest.raises(ProviderError, match=r"no value \(carbonIntensity null\) for zone DE"):
        em_source(em).intensity("DE")


def test_em_asks_not_to_fall_back_to_the_callers_location(em: ElectricityMapsServer) -> None:
    em.uncovered.add("XX-NOWHERE")
    source = em_source(em)
    source.intensity("DE")
    assert em.seen[-1].query["shouldUseFallbackCallerLookup"] == ["false"]
    with pytest.raises(ProviderError, match=r"HTTP 404.*Zone 'XX-NOWHERE' does not exist"):
        source.intensity("XX-NOWHERE")


def test_em_answer_for_another_zone_is_refused(em: ElectricityMapsServer) -> None:
    body = {
        "zone": "NL",
        "carbonIntensity": 301,
        "datetime": iso_z(floor_to(datetime.now(UTC), timedelta(hours=1))),
        "isEstimated": False,
    }
    em.fail(Fault(200, body))
    with pytest.raises(ProviderError, match=r"answered for zone 'NL' when asked for zone 'DE'"):
        em_source(em).intensity("DE")
    history = em_history_with_nulls("DE", set())
    history["zone"] = "NL"
    em.fail(Fault(200, history))
    now = datetime.now(UTC)
    with pytest.raises(ProviderError, match="answered for zone 'NL'"):
        em_source(em).history("DE", now - timedelta(hours=3), now)


def test_em_zone_check_ignores_case(em: ElectricityMapsServer) -> None:
    body = {"zone": "DE", "carbonIntensity": 301, "datetime": "2024-01-01T00:00:00.000Z"}
    em.fail(Fault(200, body))
    assert em_source(em).intensity("de").intensity_g_per_kwh == 301


def test_em_without_is_estimated_is_unknown_not_measured(em: ElectricityMapsServer) -> None:
    body = {"zone": "DE", "carbonIntensity": 301, "datetime": "2024-01-01T00:00:00.000Z"}
    em.fail(Fault(200, body))
    assert em_source(em).intensity("DE").kind is Kind.UNKNOWN
    em.fail(Fault(200, {**body, "isEstimated": False}))
    assert em_source(em).intensity("DE").kind is Kind.MEASURED


def test_em_plan_403_says_what_the_provider_said(em: ElectricityMapsServer) -> None:
    body = {
        "status": "error",
        "message": "Zone 'KR' is not available with your current plan. Upgrade to access it.",
    }
    em.fail(Fault(403, body))
    with pytest.raises(AccessDeniedError) as info:
        em_source(em).intensity("KR")
    text = str(info.value)
    assert "not available with your current plan" in text and "HTTP 403" in text
    assert "may not be in your plan" in text and TOKEN not in text
    assert len(em.seen) == 1  # not retried


# -- WattTime ----------------------------------------------------------------------------------


def test_watttime_plan_403_is_not_retried_with_new_logins(wt: WattTimeServer) -> None:
    source = WattTimeSource(username=USER, password=PASSWORD, base_url=wt.url, policy=FAST)
    source.intensity("US-CAL-CISO")  # logged in once
    logins = wt.logins
    body = {"error": "Forbidden", "message": "User does not have access to region PJM_DC"}
    wt.fail(Fault(403, body), Fault(403, body), Fault(403, body))
    with pytest.raises(AuthError, match="does not have access to region PJM_DC") as info:
        source.intensity("US-MIDA-PJM")
    assert isinstance(info.value, AccessDeniedError)
    assert wt.logins == logins
    assert [s.path for s in wt.seen[-1:]] == ["/v3/forecast"]
    assert PASSWORD not in str(info.value)


def test_watttime_stale_forecast_is_not_the_value_in_force(wt: WattTimeServer) -> None:
    wt.forecast_lag_h = 30.0  # the newest forecast point is ~6 h old
    source = WattTimeSource(username=USER, password=PASSWORD, base_url=wt.url, policy=FAST)
    with pytest.raises(ProviderError, match=r"forecast for zone US-CAL-CISO is stale"):
        source.intensity("US-CAL-CISO")


def test_watttime_stale_forecast_falls_back_saying_why(wt: WattTimeServer, tmp_path: Path) -> None:
    wt.forecast_lag_h = 30.0
    chain = FallbackChain(
        WattTimeSource(username=USER, password=PASSWORD, base_url=wt.url, policy=FAST),
        cache=ReadingCache(tmp_path / "c.sqlite"),
        last_resort=ProfileSource(),
        deadline_s=5.0,
    )
    try:
        reading = chain.intensity("US-CAL-CISO")
    finally:
        chain.close()
    assert reading.kind is Kind.SYNTHETIC
    notes = chain.take_notes()
    assert any("stale" in n and "answered by a fallback stage" in n for n in notes)


def test_unmapped_zone_hint_names_no_missing_cli_option(wt: WattTimeServer) -> None:
    source = WattTimeSource(username=USER, password=PASSWORD, base_url=wt.url, policy=FAST)
    with pytest.raises(ConfigError) as info:
        source.region_for("Atlantis")
    assert "--region" not in str(info.value)
    assert "give the WattTime region itself as the zone (e.g. CAISO_NORTH)" in str(info.value)


# -- Carbon Aware SDK --------------------------------------------------------------------------


def test_sdk_backend_region_names_stay_keyed_by_the_zone_asked(
    ca: CarbonAwareServer, tmp_path: Path
) -> None:
    ca.backend_names = {"eastus": "PJM_DC", "westus": "CAISO_NORTH"}
    source = CarbonAwareSource(base_url=ca.url, policy=FAST)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    end = start + timedelta(hours=3)
    readings = source.history("US-MIDA-PJM", start, end)
    assert {r.zone for r in readings} == {"US-MIDA-PJM"} and len(readings) == 3
    many = source.history_many(["US-MIDA-PJM", "US-CAL-CISO", "KR"], start, end)
    assert sorted({r.zone for r in many}) == ["KR", "US-CAL-CISO", "US-MIDA-PJM"]
    assert len(many) == 9
    for r in many:
        location = {"US-MIDA-PJM": "eastus", "US-CAL-CISO": "westus", "KR": "koreacentral"}
        assert r.intensity_g_per_kwh == pytest.approx(true_intensity(location[r.zone], r.time))
    cache = ReadingCache(tmp_path / "c.sqlite")
    chain = FallbackChain(source, cache=cache, last_resort=ProfileSource())
    try:
        chain.history("US-MIDA-PJM", start, end)
    finally:
        chain.close()
    assert len(cache.get("carbonaware", "US-MIDA-PJM", start, end)) == 3


def test_sdk_204_is_an_empty_answer(ca: CarbonAwareServer) -> None:
    ca.fail(Fault(204, b"", content_type="application/json"))
    source = CarbonAwareSource(base_url=ca.url, policy=FAST)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    assert source.history("DE", start, start + timedelta(hours=2)) == []
    ca.fail(Fault(204, b"", content_type="text/plain"))
    with pytest.raises(ProviderError, match=r"no emissions data for zone DE"):
        source.intensity("DE")


def test_sdk_forecast_past_its_end_is_clamped_and_said(ca: CarbonAwareServer) -> None:
    source = CarbonAwareSource(base_url=ca.url, policy=FAST)
    readings = source.forecast("DE", None, timedelta(hours=48))
    assert readings and readings[-1].time - readings[0].time < timedelta(hours=24)
    notes = source.take_notes()
    assert len(notes) == 1 and "reaches only" in notes[0] and "of the 48 h asked for" in notes[0]
    assert "dataEndAt" not in ca.seen[-1].query
