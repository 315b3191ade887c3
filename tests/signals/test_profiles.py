"""Embedded typical-year profiles: coverage, determinism, labelling, fidelity to 2022 data."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import REPO, SHARED_DATA, shared_file

from caftm.errors import ConfigError, DataError
from caftm.signals.base import Basis, Kind
from caftm.signals.profiles import (
    PROFILE_SOURCE_TEXT,
    ProfileSource,
    daily_amplitude,
    generate_year,
    load_profiles,
    profile_mean,
    shipped_zones,
    zone_profile,
)
from caftm.signals.traces import load_trace

from .conformance import IntensitySourceConformance

REQUIRED = [
    "KR",
    "JP-TK",
    "JP-KN",
    "FR",
    "DE",
    "GB",
    "CA-ON",
    "CA-QC",
    "US-CAL-CISO",
    "US-MIDA-PJM",
    "SE-SE3",
    "SG",
    "IN-WE",
]
DATA_DIR = resources.files("caftm.signals").joinpath("data")


def test_required_and_cloud_zones_are_shipped() -> None:
    zones = shipped_zones()
    assert set(REQUIRED) <= set(zones)
    assert zones == sorted(zones)


def test_every_gcp_region_zone_is_shipped() -> None:
    zones = shipped_zones()
    regions = shared_file("carbon/cloud_regions/gcp_dc_zonecode_mapper.json")
    gcp = set(json.loads(regions.read_text()).values()) - {"AUS-NSW", "AUS-VIC", "IN-DL"}
    assert gcp <= set(zones)


def test_shipped_file_is_small_statistics_with_notice() -> None:
    data = DATA_DIR.joinpath("profiles_2022.json")
    assert len(data.read_bytes()) < 500_000
    document = json.loads(data.read_text())
    assert "Electricity Maps" in document["attribution"]
    kr = document["zones"]["KR"]
    assert len(kr["hour_month_mean"]) == 12 and len(kr["hour_month_mean"][0]) == 24
    notice = DATA_DIR.joinpath("NOTICE.md").read_text()
    assert "Electricity Maps" in notice and "ODbL" in notice and "synthetic" in notice


def test_generation_is_deterministic_by_seed() -> None:
    at = datetime(2031, 7, 4, 15, 20, tzinfo=UTC)
    a, b, c = ProfileSource(seed=5), ProfileSource(seed=5), ProfileSource(seed=6)
    assert a.intensity("DE", at) == b.intensity("DE", at)
    np.testing.assert_array_equal(a.year_values("FR", 2027), b.year_values("FR", 2027))
    assert not np.array_equal(a.year_values("FR", 2027), c.year_values("FR", 2027))
    assert not np.array_equal(a.year_values("FR", 2027), a.year_values("FR", 2028))


def test_any_year_any_time_and_leap_years() -> None:
    source = ProfileSource(seed=1)
    leap = source.year_values("GB", 2024)
    assert leap.size == 8784 and np.all((leap >= 0) & (leap <= 2500))
    assert abs(leap.mean() / profile_mean("GB") - 1) < 0.03
    start = datetime(1999, 12, 31, 22, 30, tzinfo=UTC)
    readings = source.history("GB", start, start + timedelta(hours=4))
    assert [r.time.hour for r in readings] == [23, 0, 1, 2]
    assert readings[1].time.year == 2000
    inside = source.intensity("GB", datetime(2000, 1, 1, 0, 59, tzinfo=UTC))
    assert inside == readings[1]


def test_readings_say_they_are_synthetic() -> None:
    source = ProfileSource()
    start = datetime(2026, 1, 10, 6, tzinfo=UTC)
    history = source.history("KR", start, start + timedelta(hours=3))
    assert {r.kind for r in history} == {Kind.SYNTHETIC}
    assert all(r.source == PROFILE_SOURCE_TEXT for r in history)
    assert "synthetic" in PROFILE_SOURCE_TEXT and "Electricity Maps" in PROFILE_SOURCE_TEXT
    forecast = source.forecast("KR", start, timedelta(hours=5))
    assert len(forecast) == 5 and {r.kind for r in forecast} == {Kind.FORECAST}
    assert all(r.source == PROFILE_SOURCE_TEXT for r in forecast)
    trace = source.trace(2026, ["KR", "FR"])
    assert trace.kind is Kind.SYNTHETIC and "synthetic" in trace.label
    assert trace.intensity("FR", start).kind is Kind.SYNTHETIC
    assert (
        trace.intensity("FR", start).intensity_g_per_kwh
        == source.intensity("FR", start).intensity_g_per_kwh
    )


def test_unknown_zone_lists_shipped_ones() -> None:
    with pytest.raises(ConfigError, match=r"no embedded profile for zone 'XX'.*e\.g\."):
        ProfileSource().intensity("XX")
    with pytest.raises(ConfigError, match="XX"):
        profile_mean("XX")


def test_generated_years_reproduce_2022_mean_and_daily_amplitude() -> None:
    """Done-when: every shipped zone present in the 2022 data, within 3% / 15%."""
    trace = load_trace(shared_file("carbon/ci_2022_hourly_lca_123zones.csv"))
    checked, failures = 0, []
    for zone in shipped_zones():
        if zone not in trace.zones():
            continue
        real = trace.series(zone)[:8760]
        real_mean, real_amp = float(real.mean()), daily_amplitude(real)
        for seed in (0, 2024):
            generated = generate_year(zone_profile(zone), 2022, seed)
            mean_err = abs(generated.mean() / real_mean - 1)
            amp = daily_amplitude(generated)
            amp_err = abs(amp - real_amp) / real_amp if real_amp > 0 else abs(amp)
            if mean_err > 0.03 or amp_err > 0.15:
                failures.append(f"{zone} seed {seed}: mean {mean_err:.1%}, amplitude {amp_err:.1%}")
        checked += 1
    assert checked >= len(REQUIRED)
    assert not failures, failures


def test_generated_series_has_realistic_structure() -> None:
    """Hour-of-day shape and hour-to-hour persistence resemble the statistics."""
    profile = zone_profile("US-CAL-CISO")
    generated = generate_year(profile, 2022, 3)
    days = generated.reshape(-1, 24)
    july = days[181:212].mean(axis=0)
    assert np.corrcoef(july, profile.hour_month_mean[6])[0, 1] > 0.9
    steps = np.diff(generated)
    assert np.median(np.abs(steps)) < 0.25 * generated.std()


@pytest.mark.slow  # builds a year of profiles
def test_build_script_reproduces_shipped_file(tmp_path: Path) -> None:
    shared_file("carbon/ci_2022_hourly_lca_123zones.csv")
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "build_profiles.py"),
            "--data",
            str(SHARED_DATA),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rebuilt = json.loads((tmp_path / "profiles_2022.json").read_text())
    shipped = json.loads(DATA_DIR.joinpath("profiles_2022.json").read_text())
    assert set(rebuilt["zones"]) == set(shipped["zones"]) == set(load_profiles())
    for zone, stats in shipped["zones"].items():
        assert set(rebuilt["zones"][zone]) == set(stats), zone
        for key, value in stats.items():  # tolerant to last-digit rounding across platforms
            np.testing.assert_allclose(rebuilt["zones"][zone][key], value, rtol=2e-3, atol=0.02)


class TestProfileSourceConformance(IntensitySourceConformance):
    zone = "JP-TK"
    unknown_zone = "XX"

    @pytest.fixture
    def source(self) -> ProfileSource:
        return ProfileSource(seed=42)


def test_forecast_starts_at_the_current_value_and_fades_to_the_expectation() -> None:
    source = ProfileSource()
    profile = zone_profile("DE")
    start = datetime(2026, 11, 27, 0, tzinfo=UTC)  # on the hour: lead 0 is the current hour
    now = source.intensity("DE", start).intensity_g_per_kwh
    forecast = source.forecast("DE", start, timedelta(days=12))
    values = np.array([r.intensity_g_per_kwh for r in forecast])
    times = [int(r.time.timestamp()) for r in forecast]
    expectation = profile.expectation(times)
    assert values[0] == pytest.approx(now)
    assert abs(now - expectation[0]) > 50  # this hour is far from the expectation ...
    np.testing.assert_allclose(values[-24:], expectation[-24:], rtol=0.01)  # ... days later not
    gaps = np.abs(values - expectation)[::24]  # same hour, day after day: the deviation fades
    assert np.all(np.diff(gaps) <= 1e-9) and gaps[-1] < 0.02 * gaps[0]


@pytest.mark.parametrize("zone", ["DE", "FR", "GB", "CA-ON"])
def test_forecast_beats_the_expectation_on_generated_years(zone: str) -> None:
    """Mean absolute error over a generated year, a 24 h forecast every 7 h: starting from the
    current value helps most at 1 h and still at 24 h."""
    source, profile = ProfileSource(seed=3), zone_profile(zone)
    values = source.year_values(zone, 2027)
    t0 = datetime(2027, 1, 1, tzinfo=UTC)
    leads = (1, 6, 24)
    errors = {lead: [0.0, 0.0] for lead in leads}  # forecast, expectation
    for origin in range(0, values.size - 25, 7):
        forecast = source.forecast(zone, t0 + timedelta(hours=origin), timedelta(hours=25))
        for lead in leads:
            actual = values[origin + lead]
            reading = forecast[lead]  # on the hour: index = lead
            expected = profile.expectation([int(reading.time.timestamp())])[0]
            errors[lead][0] += abs(actual - reading.intensity_g_per_kwh)
            errors[lead][1] += abs(actual - expected)
    for lead, most in ((1, 0.5), (6, 0.8), (24, 0.97)):
        assert errors[lead][0] < most * errors[lead][1], (lead, errors[lead])


def test_a_built_profile_set_is_a_source_by_path(tmp_path: Path) -> None:
    from caftm.signals.profile_build import build_profile_set
    from caftm.signals.registry import fallback_source, get_source
    from caftm.signals.traces import TraceSource

    start = datetime(2021, 1, 1, tzinfo=UTC)
    hours = np.arange(8760)
    values = np.vstack([200 + 50 * np.sin(2 * np.pi * hours / 24), 80 + 0 * hours])
    trace = TraceSource(["XA", "XB"], start, 3600, values, basis=Basis.DIRECT)
    document, skipped = build_profile_set(trace)
    assert skipped == [] and document["year"] == 2021 and document["basis"] == "direct"
    path = tmp_path / "set.json"
    path.write_text(json.dumps(document))
    for source in (get_source(f"profile:{path}"), fallback_source(f"profile:{path}")):
        assert isinstance(source, ProfileSource) and source.zones() == ["XA", "XB"]
        reading = source.intensity("XA", datetime(2024, 5, 1, 12, tzinfo=UTC))
        assert reading.basis is Basis.DIRECT and reading.kind is Kind.SYNTHETIC
        assert "2021 statistics of" in reading.source
        assert 100 < reading.intensity_g_per_kwh < 300
    with pytest.raises(ConfigError, match=r"no profile in .*set\.json for zone 'FR'"):
        ProfileSource(path=path).intensity("FR")
    with pytest.raises(DataError, match=r"cannot read profile set .*absent\.json"):
        get_source(f"profile:{tmp_path / 'absent.json'}")
    with pytest.raises(ConfigError, match="unknown carbon-intensity provider 'trace:x'"):
        get_source("trace:x")
