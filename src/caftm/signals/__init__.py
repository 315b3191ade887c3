"""caftm.signals: carbon intensity of a grid zone now, in the past and forecast.

Every source is an :class:`IntensitySource` returning typed :class:`Reading` values (zone, UTC
time, gCO2eq/kWh, basis, kind, source). Start with :func:`default_source` (embedded typical-year
profiles: no key, no network) or :func:`get_source` / :func:`fallback_source` by provider name.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from caftm.signals.base import (
        MAX_PLAUSIBLE_G_PER_KWH,
        Basis,
        IntensitySource,
        Kind,
        Reading,
        as_utc,
        check_intensity,
        utcnow,
    )
    from caftm.signals.cache import CachedSource, ReadingCache, default_cache_path
    from caftm.signals.carbonaware import CarbonAwareSource
    from caftm.signals.chain import FallbackChain
    from caftm.signals.electricitymaps import ElectricityMapsSource
    from caftm.signals.forecast import forecast_readings, select_model
    from caftm.signals.http import RetryPolicy
    from caftm.signals.profiles import PROFILE_SOURCE_TEXT, ProfileSource, shipped_zones
    from caftm.signals.registry import default_source, fallback_source, get_source, known_sources
    from caftm.signals.traces import TraceSource, load_trace
    from caftm.signals.ukgrid import UkGridSource
    from caftm.signals.watttime import SignalIndex, WattTimeSource

__all__ = [
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

#: Public name -> defining module; imported on first use so `import caftm.signals.cache`
#: does not pay for numpy/scipy (profiles, forecast) or httpx (clients).
_LAZY: dict[str, str] = {
    "Basis": "caftm.signals.base",
    "CachedSource": "caftm.signals.cache",
    "CarbonAwareSource": "caftm.signals.carbonaware",
    "ElectricityMapsSource": "caftm.signals.electricitymaps",
    "FallbackChain": "caftm.signals.chain",
    "IntensitySource": "caftm.signals.base",
    "Kind": "caftm.signals.base",
    "MAX_PLAUSIBLE_G_PER_KWH": "caftm.signals.base",
    "PROFILE_SOURCE_TEXT": "caftm.signals.profiles",
    "ProfileSource": "caftm.signals.profiles",
    "Reading": "caftm.signals.base",
    "ReadingCache": "caftm.signals.cache",
    "RetryPolicy": "caftm.signals.http",
    "SignalIndex": "caftm.signals.watttime",
    "TraceSource": "caftm.signals.traces",
    "UkGridSource": "caftm.signals.ukgrid",
    "WattTimeSource": "caftm.signals.watttime",
    "as_utc": "caftm.signals.base",
    "check_intensity": "caftm.signals.base",
    "default_cache_path": "caftm.signals.cache",
    "default_source": "caftm.signals.registry",
    "fallback_source": "caftm.signals.registry",
    "forecast_readings": "caftm.signals.forecast",
    "get_source": "caftm.signals.registry",
    "known_sources": "caftm.signals.registry",
    "load_trace": "caftm.signals.traces",
    "select_model": "caftm.signals.forecast",
    "shipped_zones": "caftm.signals.profiles",
    "utcnow": "caftm.signals.base",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'caftm.signals' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
