"""``caftm zones``, ``caftm regions`` and ``caftm intensity now|history|forecast``.

The commands parse options, call :mod:`caftm.regions` and :mod:`caftm.signals`, and render the
result; any :class:`~caftm.errors.CaftmError` becomes one error line and exit code 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from caftm.cli._common import console
from caftm.cli._render import (
    SYNTHETIC_NOTE,
    check_plot_path,
    format_time,
    is_synthetic,
    plot_readings,
    readings_table,
    summarise,
    summary_line,
)
from caftm.errors import ConfigError
from caftm.regions import Catalog, Region, load_sites
from caftm.regions.hints import did_you_mean
from caftm.signals.base import IntensitySource, Kind, Reading, as_utc, utcnow

#: Longest forecast horizon the CLI accepts, hours.
MAX_FORECAST_HOURS = 240
#: Longest --start..--end range of ``intensity history``.
MAX_HISTORY = timedelta(days=36_525)
#: Longest per-request timeout of a live provider, seconds.
MAX_TIMEOUT_S = 3600.0
_LOCAL_SOURCES = ("profile", "trace")

ZoneOption = Annotated[
    str,
    typer.Option(
        "--zone",
        "-z",
        help="Grid zone (FR, JP-TK) or cloud region (aws:eu-west-3, gcp:europe-west1).",
    ),
]
ProviderOption = Annotated[
    str,
    typer.Option(
        "--provider",
        "-p",
        help="profile (embedded, no key), profile:PATH (a set from 'caftm profiles build'), "
        "trace, electricitymaps, watttime, ukgrid, carbonaware.",
    ),
]
TraceOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--trace",
        help="Trace file(s) for --provider trace: Electricity Maps export, wide CSV or Parquet.",
    ),
]
BaseUrlOption = Annotated[
    str | None, typer.Option("--base-url", help="API root of a live provider (self-hosted).")
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", help="Per-request timeout of a live provider, seconds.")
]
RetriesOption = Annotated[
    int, typer.Option("--retries", help="Retries of a live provider on 429/5xx/network errors.")
]
FallbackOption = Annotated[
    bool,
    typer.Option(
        "--fallback/--no-fallback",
        help="Fall back live -> cache -> forecast -> embedded profile instead of failing.",
    ),
]
PlotOption = Annotated[Path | None, typer.Option("--plot", help="Also draw a PNG plot here.")]
ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="Controller config (YAML): the plot draws its threshold θ."),
]
MaxRowsOption = Annotated[
    int, typer.Option("--max-rows", help="Show at most this many rows (0: all).")
]


def register(app: typer.Typer) -> None:
    """Add ``zones``, ``regions`` and the ``intensity`` group to ``app``."""
    app.command("zones")(zones_command)
    app.command("regions")(regions_command)
    intensity = typer.Typer(
        help="Carbon intensity of a grid zone: now, in the past, forecast.",
        no_args_is_help=True,
    )
    intensity.command("now")(now_command)
    intensity.command("history")(history_command)
    intensity.command("forecast")(forecast_command)
    app.add_typer(intensity, name="intensity")


# -- zones and regions ---------------------------------------------------------------------


def zones_command(
    all_zones: Annotated[
        bool, typer.Option("--all", help="Also list hosted zones that have no embedded profile.")
    ] = False,
) -> None:
    """List the zones of the embedded profiles, their yearly mean and the regions they host."""
    from caftm.signals.profiles import profile_basis, profile_mean, profile_year, shipped_zones

    catalog = Catalog.load_default()
    profiled = shipped_zones()
    zones = sorted(set(profiled) | set(catalog.zones())) if all_zones else profiled
    table = Table(
        title=f"{len(zones)} grid zones (embedded profiles from Electricity Maps "
        f"{profile_year()} hourly data, {profile_basis()} basis)",
        title_justify="left",
    )
    table.add_column("zone", no_wrap=True)
    table.add_column("name", max_width=24)
    table.add_column("mean g/kWh", justify="right", max_width=10)
    table.add_column("cloud regions hosted (* = GPU)", ratio=1)
    known = set(catalog.zones(hosted_only=False))
    for zone in zones:
        mean = f"{profile_mean(zone):.0f}" if zone in profiled else "—"
        hosted = catalog.by_zone(zone) if zone in known else []
        table.add_row(zone, catalog.zone_name(zone), mean, _hosted_text(hosted))
    console.print(table)
    console.print(f"Means are those of the embedded {SYNTHETIC_NOTE}.", soft_wrap=True)
    if all_zones:
        console.print(f"— : no embedded profile (no {profile_year()} data); use a live provider.")


def _hosted_text(regions: list[Region]) -> str:
    return ", ".join(r.key + ("*" if r.has_gpu else "") for r in regions)


def regions_command(
    provider: Annotated[
        str | None, typer.Option("--provider", "-p", help="aws, gcp or azure.")
    ] = None,
    zone: Annotated[str | None, typer.Option("--zone", "-z", help="Only this grid zone.")] = None,
    gpu: Annotated[bool, typer.Option("--gpu", help="Only regions offering GPUs.")] = False,
    sites: Annotated[
        Path | None, typer.Option("--sites", help="YAML file of custom sites to include.")
    ] = None,
) -> None:
    """List cloud regions (and custom sites) with their grid zone and location."""
    catalog = Catalog.load_default()
    if sites is not None:
        catalog = catalog.with_sites(load_sites(sites))
    regions = catalog.regions(provider, gpu_only=gpu)
    if zone is not None:
        wanted = catalog.check_zone(catalog.zone_of(zone))
        regions = [r for r in regions if r.zone == wanted]
    from caftm.signals.profiles import profile_year, shipped_zones

    profiled = set(shipped_zones())
    year = profile_year()
    table = Table(title=f"{len(regions)} regions", title_justify="left")
    for name in ("provider", "region", "name", "city", "zone"):
        table.add_column(name, no_wrap=name in ("region", "zone"))
    table.add_column("lat °", justify="right")
    table.add_column("lon °", justify="right")
    table.add_column("GPU", justify="center")
    table.add_column("signal (no key)", no_wrap=True)
    for r in regions:
        table.add_row(
            r.provider,
            r.region_id,
            r.name,
            r.city,
            r.zone,
            f"{r.latitude_deg:.2f}",
            f"{r.longitude_deg:.2f}",
            "yes" if r.has_gpu else "",
            f"profile {year}" if r.zone in profiled else "live only*",
        )
    console.print(table)
    live_only = sorted({r.zone for r in regions if r.zone not in profiled})
    if live_only:
        console.print(
            f"* no embedded profile for zone(s) {', '.join(live_only)}: the default provider "
            "(profile) cannot serve them; use --provider electricitymaps (any zone, with a key)",
            soft_wrap=True,
        )


# -- intensity -------------------------------------------------------------------------------


def now_command(
    zone: ZoneOption,
    provider: ProviderOption = "profile",
    at: Annotated[
        str | None, typer.Option("--at", help="ISO 8601 time with timezone (default: now).")
    ] = None,
    trace: TraceOption = None,
    base_url: BaseUrlOption = None,
    timeout: TimeoutOption = 10.0,
    retries: RetriesOption = 3,
    fallback: FallbackOption = False,
) -> None:
    """The carbon intensity of a zone now (or at --at)."""
    when = parse_time(at, option="--at") if at is not None else None
    with _source(provider, trace, base_url, timeout, retries, fallback) as (name, source):
        grid_zone, label = _zone(zone, source, name)
        reading = source.intensity(grid_zone, when)
        notes = source.take_notes()
    title = f"Carbon intensity of {label}, {answered_by([reading], name)}"
    console.print(readings_table([reading], title=title))
    _notes([reading], name, notes)


def history_command(
    zone: ZoneOption,
    start: Annotated[str, typer.Option("--start", help="ISO 8601 start, with timezone.")],
    end: Annotated[str, typer.Option("--end", help="ISO 8601 end (excluded), with timezone.")],
    provider: ProviderOption = "profile",
    trace: TraceOption = None,
    plot: PlotOption = None,
    max_rows: MaxRowsOption = 48,
    base_url: BaseUrlOption = None,
    timeout: TimeoutOption = 10.0,
    retries: RetriesOption = 3,
    fallback: FallbackOption = False,
    config: ConfigOption = None,
) -> None:
    """Past carbon intensity of a zone over [--start, --end)."""
    if plot is not None:
        check_plot_path(plot)
    threshold, threshold_note = _threshold(config)
    begin = parse_time(start, option="--start")
    finish = parse_time(end, option="--end")
    if begin >= finish:
        raise ConfigError(
            f"--start {format_time(begin)} is not before --end {format_time(finish)} (UTC); "
            "swap them or widen the range"
        )
    if finish - begin > MAX_HISTORY:
        raise ConfigError(
            f"--start {format_time(begin)} to --end {format_time(finish)} spans "
            f"{(finish - begin).days} days; ask for at most {MAX_HISTORY.days} days at once"
        )
    with _source(provider, trace, base_url, timeout, retries, fallback) as (name, source):
        grid_zone, label = _zone(zone, source, name)
        readings = source.history(grid_zone, begin, finish)
        notes = source.take_notes()
    if not readings:
        raise ConfigError(
            f"provider {name} has no readings for {label} in "
            f"[{format_time(begin)}, {format_time(finish)}) UTC; pick a range the data covers"
        )
    title = f"History of {label}, {answered_by(readings, name)}"
    console.print(readings_table(readings, title=title, max_rows=max_rows))
    console.print(summary_line(summarise(readings)))
    if plot is not None:
        plot_readings(
            readings,
            plot,
            zone=grid_zone,
            provider=name,
            what="History of",
            now=utcnow(),
            threshold_g_per_kwh=threshold,
        )
        console.print(f"plot written to {plot}")
    _notes(readings, name, notes + threshold_note)


def forecast_command(
    zone: ZoneOption,
    hours: Annotated[int, typer.Option("--hours", help="Horizon in hours (1..240).")] = 24,
    provider: ProviderOption = "profile",
    at: Annotated[
        str | None, typer.Option("--at", help="Forecast start, ISO 8601 (default: now).")
    ] = None,
    trace: TraceOption = None,
    plot: PlotOption = None,
    max_rows: MaxRowsOption = 48,
    base_url: BaseUrlOption = None,
    timeout: TimeoutOption = 10.0,
    retries: RetriesOption = 3,
    fallback: FallbackOption = False,
    config: ConfigOption = None,
) -> None:
    """Hourly carbon-intensity forecast of a zone over the next --hours."""
    if not 1 <= hours <= MAX_FORECAST_HOURS:
        raise ConfigError(
            f"--hours {hours} is out of range; give a horizon of 1..{MAX_FORECAST_HOURS} hours"
        )
    if plot is not None:
        check_plot_path(plot)
    threshold, threshold_note = _threshold(config)
    when = parse_time(at, option="--at") if at is not None else None
    if when is not None and when > datetime.max.replace(tzinfo=UTC) - timedelta(hours=hours):
        raise ConfigError(f"--at {at} plus {hours} h runs past the year 9999; pick an earlier time")
    with _source(provider, trace, base_url, timeout, retries, fallback) as (name, source):
        grid_zone, label = _zone(zone, source, name)
        try:
            readings = source.forecast(grid_zone, when, timedelta(hours=hours))
        except NotImplementedError as e:
            raise ConfigError(
                f"provider {name} gives no forecast for {label}; use --fallback or "
                "--provider profile"
            ) from e
        notes = source.take_notes()
    if not readings:
        raise ConfigError(f"provider {name} returned an empty forecast for {label}")
    title = f"{hours} h forecast for {label}, {answered_by(readings, name)}"
    console.print(readings_table(readings, title=title, max_rows=max_rows))
    console.print(summary_line(summarise(readings)))
    if plot is not None:
        plot_readings(
            readings,
            plot,
            zone=grid_zone,
            provider=name,
            what="Forecast",
            now=utcnow(),
            threshold_g_per_kwh=threshold,
        )
        console.print(f"plot written to {plot}")
    _notes(readings, name, notes + threshold_note)


# -- helpers -------------------------------------------------------------------------------


def parse_time(text: str, *, option: str) -> datetime:
    """An ISO 8601 time with timezone, converted to UTC.

    Raises:
        ConfigError: not ISO 8601, or naive.
    """
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as e:
        raise ConfigError(
            f"{option} {text!r} is not an ISO 8601 time; write e.g. 2024-05-01T12:00Z"
        ) from e
    if parsed.tzinfo is None:
        example = f"{text.strip()}Z"
        try:
            datetime.fromisoformat(example)
        except ValueError:  # a bare date takes no 'Z'
            example = f"{text.strip()}T00:00Z"
        raise ConfigError(
            f"{option} {text!r} has no timezone; add 'Z' or '+00:00' (e.g. {example})"
        )
    return as_utc(parsed, what=option)


@contextmanager
def _source(
    provider: str,
    trace: list[Path] | None,
    base_url: str | None,
    timeout_s: float,
    retries: int,
    fallback: bool,
) -> Iterator[tuple[str, IntensitySource]]:
    """Build the source named ``provider`` from the CLI options; close it afterwards."""
    from caftm.signals.registry import LIVE_SOURCES, fallback_source, get_source

    name = provider.strip()
    if not name.lower().startswith("profile:"):  # a profile set's path keeps its case
        name = name.lower()
    options: dict[str, Any] = {}
    if name == "trace":
        if not trace:
            raise ConfigError(
                "--provider trace needs --trace PATH (Electricity Maps export, wide CSV or Parquet)"
            )
        options["path"] = trace[0] if len(trace) == 1 else list(trace)
    elif trace:
        raise ConfigError(f"--trace is read only by --provider trace, not {name!r}")
    if name in LIVE_SOURCES:
        from caftm.signals.http import RetryPolicy

        if not (math.isfinite(timeout_s) and 0 < timeout_s <= MAX_TIMEOUT_S) or retries < 0:
            raise ConfigError(
                f"--timeout must be > 0 and <= {MAX_TIMEOUT_S:g} seconds and --retries >= 0"
            )
        if base_url:
            options["base_url"] = base_url
        options["policy"] = RetryPolicy(
            timeout_s=timeout_s,
            max_retries=retries,
            deadline_s=timeout_s * (retries + 1) * 2,
        )
    elif base_url:
        raise ConfigError(f"--base-url is for live providers, not {name!r}")
    source = fallback_source(name, **options) if fallback else get_source(name, **options)
    try:
        yield name, source
    finally:
        close = getattr(source, "close", None)
        if callable(close):
            close()


def _zone(text: str, source: IntensitySource, provider: str) -> tuple[str, str]:
    """The grid zone for ``--zone`` and a label naming it (and the region it came from)."""
    catalog = Catalog.load_default()
    zone = catalog.zone_of(text, strict=False)
    label = f"{zone} ({text.strip()})" if zone != text.strip() else zone
    if provider in _LOCAL_SOURCES or provider.startswith("profile:"):
        known = source.zones()
        if known and zone not in known:
            hint = did_you_mean(zone, known)
            if provider == "profile":
                what, more = (
                    "embedded profile",
                    "; run 'caftm zones' to list them, or use a live provider",
                )
            else:
                what = "trace" if provider == "trace" else f"profile in {provider[8:]}"
                more = f"; it has {', '.join(known[:8])}"
            raise ConfigError(f"no {what} for zone {zone!r}{hint}{more}")
    return zone, label


def _threshold(config: Path | None) -> tuple[float | None, list[str]]:
    """The absolute threshold θ of the controller config at ``config`` (None without one), and a
    note when its threshold is set from the data at run time (not drawn)."""
    if config is None:
        return None, []
    from caftm.control.config import ControllerConfig
    from caftm.control.threshold import ThresholdMode

    threshold = ControllerConfig.from_yaml(config).threshold
    if threshold.mode is ThresholdMode.ABSOLUTE:
        return threshold.value_g_per_kwh, []
    return None, [
        f"{config}: threshold mode {threshold.mode.value} is set from the data at run time; "
        "not drawn"
    ]


def answered_by(readings: list[Reading], provider: str) -> str:
    """``provider NAME`` and, when others answered (a fallback stage, the embedded profile),
    which; then the basis of the figures (lifecycle or direct)."""
    sources = list(dict.fromkeys(r.source for r in readings))
    bases = "/".join(dict.fromkeys(r.basis.value for r in readings))
    text = f"provider {provider}"
    if sources != [provider]:
        text += f", answered by {', '.join(sources)}"
    return f"{text} ({bases} basis)"


def _notes(readings: list[Reading], provider: str, notes: list[str]) -> None:
    for note in notes:
        console.print(f"Note: {note}", style="yellow", soft_wrap=True, markup=False)
    from caftm.signals.profiles import PROFILE_SOURCE_TEXT

    if provider == "profile" or any(r.source == PROFILE_SOURCE_TEXT for r in readings):
        console.print(f"Note: {SYNTHETIC_NOTE}.", style="yellow", soft_wrap=True)
    elif is_synthetic(readings, provider):
        sources = ", ".join(dict.fromkeys(r.source for r in readings if r.kind is Kind.SYNTHETIC))
        console.print(
            f"Note: synthetic values generated from {sources or provider} — not measurements.",
            style="yellow",
            soft_wrap=True,
            markup=False,
        )
