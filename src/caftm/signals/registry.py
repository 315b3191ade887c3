"""Carbon-intensity sources by name, imported on first use.

get_source("electricitymaps")            # the bare live client (AuthError if no key)
get_source("profile:my_profiles.json")   # a profile set built by `caftm profiles build`
fallback_source("electricitymaps")       # live -> cache -> forecast -> embedded profile
configured_source(name, trace_path)      # what a config's signals: section names
default_source()                         # the embedded typical-year profile: no key, no network
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from caftm._registry import LazyRegistry
from caftm.errors import AuthError, ConfigError
from caftm.signals.base import IntensitySource

logger = logging.getLogger(__name__)

_REINSTALL = "reinstall caftm with `pip install -e .`"
#: name -> ("module:Class", install hint); every class is an IntensitySource.
SOURCES: LazyRegistry[IntensitySource] = LazyRegistry(
    "carbon-intensity provider",
    IntensitySource,
    {
        "carbonaware": ("caftm.signals.carbonaware:CarbonAwareSource", _REINSTALL),
        "electricitymaps": ("caftm.signals.electricitymaps:ElectricityMapsSource", _REINSTALL),
        "profile": ("caftm.signals.profiles:ProfileSource", _REINSTALL),
        "trace": ("caftm.signals.traces:TraceSource", _REINSTALL),
        "ukgrid": ("caftm.signals.ukgrid:UkGridSource", _REINSTALL),
        "watttime": ("caftm.signals.watttime:WattTimeSource", _REINSTALL),
    },
)
#: Sources that talk to a provider over the network.
LIVE_SOURCES = frozenset({"carbonaware", "electricitymaps", "ukgrid", "watttime"})


def known_sources() -> list[str]:
    """Every registered source name, sorted."""
    return SOURCES.names()


def source_class(name: str) -> type[IntensitySource]:
    """The class registered as ``name`` (``profile:PATH`` is ``profile``; case is ignored).

    Raises:
        ConfigError: unknown name (the message lists the known ones), or the class cannot be
            imported.
    """
    return SOURCES.load(_split(name)[0] if isinstance(name, str) else name)


def get_source(name: str, **options: Any) -> IntensitySource:
    """A source by name, built with ``options`` (the class's keyword arguments).

    ``trace`` takes ``path=`` (a trace file or a list of them) and is loaded with
    :func:`caftm.signals.traces.load_trace`.

    Raises:
        ConfigError: unknown name or bad options.
        AuthError: a live provider's key is missing.
    """
    cls = source_class(name)
    path = _split(name)[1]
    if path is not None:  # profile:PATH
        options["path"] = path
    if cls.name == "trace" and "path" in options:
        from caftm.signals.traces import load_trace

        return load_trace(options.pop("path"), **options)
    try:
        return cls(**options)
    except TypeError as e:
        raise ConfigError(f"bad options for provider {name!r}: {e}") from e


def _split(name: str) -> tuple[str, str | None]:
    """``("profile", "/x.json")`` for ``"profile:/x.json"``; ``(name, None)`` otherwise (the
    name lower-cased, the path kept as written)."""
    head, sep, rest = name.strip().partition(":")
    if sep and head.strip().lower() == "profile":
        if not rest.strip():
            raise ConfigError("provider 'profile:' needs a path: profile:PATH/TO/profiles.json")
        return "profile", rest.strip()
    return name.strip().lower(), None


def default_source() -> IntensitySource:
    """The embedded typical-year profiles: no key, no network (readings say synthetic)."""
    return get_source("profile")


def fallback_source(
    name: str,
    *,
    cache_path: Path | str | None = None,
    deadline_s: float = 15.0,
    **options: Any,
) -> IntensitySource:
    """``name`` wrapped in a :class:`FallbackChain` over the shared cache and embedded profile.

    A live provider whose key is missing is skipped with a warning: the chain then answers
    from the cache and the profile. Non-live names are returned as :func:`get_source` builds them.

    Raises:
        ConfigError: unknown name or bad options.
    """
    from caftm.signals.cache import ReadingCache
    from caftm.signals.chain import FallbackChain

    if source_class(name).name not in LIVE_SOURCES:
        return get_source(name, **options)
    why_no_live = None
    try:
        live: IntensitySource | None = get_source(name, **options)
    except AuthError as e:
        logger.warning("%s; using the cache and embedded profile instead", e)
        live = None
        why_no_live = str(e)
    return FallbackChain(
        live,
        cache=ReadingCache(cache_path),
        last_resort=default_source(),
        deadline_s=deadline_s,
        cache_name=source_class(name).name,
        why_no_live=why_no_live,
    )


def configured_source(
    name: str, trace_path: str | None = None, *, deadline_s: float = 15.0
) -> IntensitySource:
    """The source a controller config's ``signals:`` section names (the one place that choice
    is made, for the controller, the supervisor, ``caftm jobs check`` and the report).

    ``trace`` reads ``trace_path`` (required: never a made-up trace in its place); any other
    name is :func:`fallback_source`'s: a live provider behind the cache and the embedded
    profile (whose readings say synthetic), ``profile`` the embedded profiles themselves.

    Raises:
        ConfigError: ``trace`` without ``trace_path``, an unknown name or bad options.
        DataError: the trace file is missing or malformed.
    """
    if source_class(name).name == "trace":
        if not trace_path:
            raise ConfigError("signals.trace_path is needed with signals.source: trace")
        return get_source("trace", path=trace_path)
    return fallback_source(name, deadline_s=deadline_s)
