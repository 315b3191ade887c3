"""Sources by name, the embedded default, and the pinned public API of caftm.signals."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

import caftm.signals as signals
from caftm.errors import AuthError, ConfigError
from caftm.signals import registry
from caftm.signals.base import Basis, Kind, Reading, utcnow
from caftm.signals.cache import ReadingCache
from caftm.signals.chain import FallbackChain
from caftm.signals.electricitymaps import ElectricityMapsSource
from caftm.signals.profiles import ProfileSource
from caftm.signals.ukgrid import UkGridSource

from .servers import ElectricityMapsServer

EM_VARS = ("CAFTM_ELECTRICITYMAPS_TOKEN", "ELECTRICITYMAPS_TOKEN", "ELECTRICITYMAPS_API_KEY")


@pytest.fixture
def no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in EM_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CAFTM_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("CAFTM_CACHE_DIR", str(tmp_path / "cache"))


def test_public_api_is_pinned() -> None:
    assert signals.__all__ == [
        "MAX_PLAUSIBLE_G_PER_KWH",
        "PROFILE_SOURCE_TEXT",
        "Basis",
        "CachedSource",
        "CarbonAwareSource",
        "ElectricityMapsSource",
        "FallbackChain",
        "IntensitySource",
        "Kind",
        "ProfileSource",
        "Reading",
        "ReadingCache",
        "RetryPolicy",
        "SignalIndex",
        "TraceSource",
        "UkGridSource",
        "WattTimeSource",
        "as_utc",
        "check_intensity",
        "default_cache_path",
        "default_source",
        "fallback_source",
        "forecast_readings",
        "get_source",
        "known_sources",
        "load_trace",
        "select_model",
        "shipped_zones",
        "utcnow",
    ]
    # each public name is the package's own object, from the module that defines it
    homes = {
        name: getattr(signals, name).__module__
        for name in signals.__all__
        if not isinstance(getattr(signals, name), int | float | str)
    }
    assert {name for name, home in homes.items() if not home.startswith("caftm.signals.")} == set()
    assert homes["load_trace"] == homes["TraceSource"] == "caftm.signals.traces"


def test_every_registered_name_resolves_to_an_intensity_source() -> None:
    assert registry.known_sources() == [
        "carbonaware",
        "electricitymaps",
        "profile",
        "trace",
        "ukgrid",
        "watttime",
    ]
    for name in registry.known_sources():
        assert issubclass(registry.source_class(name), signals.IntensitySource)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown .* 'electricmaps'; known: carbonaware, elec"):
        registry.get_source("electricmaps")


def test_get_source_passes_options() -> None:
    source = registry.get_source("ukgrid", base_url="http://127.0.0.1:9")
    assert isinstance(source, UkGridSource)
    with pytest.raises(ConfigError, match="bad options for provider 'ukgrid'"):
        registry.get_source("ukgrid", colour="blue")


def test_default_source_is_the_embedded_profile() -> None:
    source = registry.default_source()
    assert isinstance(source, ProfileSource)
    assert "synthetic" in source.intensity("KR").source


def test_missing_key_raises_from_get_source_but_falls_back_in_chain(no_keys: None) -> None:
    with pytest.raises(AuthError, match="CAFTM_ELECTRICITYMAPS_TOKEN"):
        registry.get_source("electricitymaps")
    chain = registry.fallback_source("electricitymaps")
    assert isinstance(chain, FallbackChain) and chain.live is None
    assert "synthetic" in chain.intensity("DE").source
    chain.close()


def test_fallback_source_wraps_live_client(no_keys: None, tmp_path: Path) -> None:
    with ElectricityMapsServer("tok-x") as server:
        chain = registry.fallback_source(
            "electricitymaps", token="tok-x", base_url=server.url, cache_path=tmp_path / "c.db"
        )
        assert isinstance(chain, FallbackChain)
        assert isinstance(chain.live, ElectricityMapsSource)
        assert chain.intensity("DE").source == "electricitymaps"
        chain.close()
    assert registry.fallback_source("profile").name == "profile"


def test_trace_by_path(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("datetime_utc,DE\n2022-01-01T00:00:00,300\n2022-01-01T01:00:00,310\n")
    source = registry.get_source("trace", path=path)
    assert isinstance(source, signals.TraceSource)
    assert source.zones() == ["DE"]


def test_trace_by_several_paths(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("datetime_utc,DE\n2022-01-01T00:00:00,300\n2022-01-01T01:00:00,310\n")
    second.write_text("datetime_utc,FR\n2022-01-01T00:00:00,50\n2022-01-01T01:00:00,60\n")
    source = registry.get_source("trace", path=[first, second])
    assert sorted(source.zones()) == ["DE", "FR"]


def test_trace_by_path_takes_the_name_as_source_class_does(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("datetime_utc,DE\n2022-01-01T00:00:00,300\n2022-01-01T01:00:00,310\n")
    source = registry.get_source(" Trace", path=path)
    assert source.zones() == ["DE"]
    assert registry.fallback_source("TRACE", path=path).zones() == ["DE"]


def test_missing_key_chain_answers_from_the_providers_cache(no_keys: None, tmp_path: Path) -> None:
    cache_path = tmp_path / "cache" / "signals.sqlite"
    hour = utcnow().replace(minute=0, second=0, microsecond=0)
    observed = [
        Reading("DE", hour - timedelta(hours=h), 321.0, Basis.LIFECYCLE, Kind.MEASURED, "em")
        for h in range(3)
    ]
    ReadingCache(cache_path).put(observed, source="electricitymaps")
    chain = registry.fallback_source("electricitymaps", cache_path=cache_path)
    assert isinstance(chain, FallbackChain) and chain.live is None
    reading = chain.intensity("DE")
    assert (reading.source, reading.intensity_g_per_kwh) == ("cache:electricitymaps", 321.0)
    history = chain.history("DE", hour - timedelta(hours=2), hour + timedelta(hours=1))
    assert {r.source for r in history} == {"cache:electricitymaps"} and len(history) == 3
    chain.close()


def test_configured_source_reads_the_trace_the_config_names(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("datetime_utc,DE\n2022-01-01T00:00:00,300\n2022-01-01T01:00:00,310\n")
    source = registry.configured_source("trace", str(path))
    assert isinstance(source, signals.TraceSource) and source.zones() == ["DE"]


@pytest.mark.parametrize("trace_path", [None, ""])
def test_configured_source_never_makes_up_a_trace(trace_path: str | None) -> None:
    with pytest.raises(ConfigError, match=r"signals\.trace_path is needed"):
        registry.configured_source("trace", trace_path)


def test_configured_source_puts_a_live_provider_behind_the_chain(no_keys: None) -> None:
    chain = registry.configured_source("electricitymaps", deadline_s=2.0)
    assert isinstance(chain, FallbackChain) and chain.live is None
    assert "synthetic" in chain.intensity("DE").source  # the embedded profile says so
    chain.close()
    profile = registry.configured_source("profile", "ignored.csv")
    assert isinstance(profile, ProfileSource)
    with pytest.raises(ConfigError, match="unknown carbon-intensity provider 'nope'"):
        registry.configured_source("nope")
