"""``caftm demo``: the embedded intensities now and a 24 h forecast, no key and no network.

Until the training demo exists this shows what every later decision reads: how much CO2 a
kWh costs now in a few zones, and when in the next day it is cleanest.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.table import Table

from caftm.cli._common import console
from caftm.cli._render import SYNTHETIC_NOTE, format_time, summarise
from caftm.regions import Catalog

#: Zones the demo shows, from coal-heavy to hydro/nuclear-heavy grids.
DEMO_ZONES = ("KR", "JP-TK", "DE", "FR", "CA-ON")
DEMO_HORIZON = timedelta(hours=24)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo")(demo_command)


def demo_command(
    zones: Annotated[
        list[str] | None, typer.Option("--zone", "-z", help="Zones to show (repeatable).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic profiles.")] = 0,
) -> None:
    """Embedded carbon intensities now and the next 24 h (synthetic, no key, no network)."""
    from caftm.signals.profiles import ProfileSource

    source = ProfileSource(seed=seed)
    catalog = Catalog.load_default()
    chosen = [catalog.zone_of(z) for z in zones] if zones else list(DEMO_ZONES)
    table = Table(
        title="Carbon intensity now and next 24 h — SYNTHETIC typical-year profiles",
        title_justify="left",
        caption=(
            "gCO2eq/kWh (lifecycle); fc = 24 h forecast (from the profile and the current "
            "value); times UTC; GPU = cloud regions with GPUs in the zone.\n"
            f"Data: {SYNTHETIC_NOTE}."
        ),
        caption_justify="left",
    )
    table.add_column("zone", no_wrap=True)
    table.add_column("name", max_width=16)
    table.add_column("now", justify="right")
    table.add_column("fc min", justify="right")
    table.add_column("fc mean", justify="right")
    table.add_column("fc max", justify="right")
    table.add_column("cleanest", no_wrap=True)
    table.add_column("GPU", justify="right")
    now_by_zone: dict[str, float] = {}
    observed_at = None
    for zone in chosen:
        reading = source.intensity(zone)
        observed_at = reading.time
        summary = summarise(source.forecast(zone, reading.time, DEMO_HORIZON))
        now_by_zone[zone] = reading.intensity_g_per_kwh
        gpu_regions = [r for r in catalog.by_zone(zone) if r.has_gpu]  # zone_of: a known zone
        table.add_row(
            zone,
            catalog.zone_name(zone),
            f"{reading.intensity_g_per_kwh:.0f}",
            f"{summary.min_g_per_kwh:.0f}",
            f"{summary.mean_g_per_kwh:.0f}",
            f"{summary.max_g_per_kwh:.0f}",
            summary.cleanest_time.strftime("%a %H:%M"),
            str(len(gpu_regions)),
        )
    console.print(table)
    if observed_at is not None and len(now_by_zone) > 1:
        cleanest = min(now_by_zone, key=now_by_zone.__getitem__)
        dirtiest = max(now_by_zone, key=now_by_zone.__getitem__)
        ratio = now_by_zone[dirtiest] / max(now_by_zone[cleanest], 1e-9)
        console.print(
            f"At {format_time(observed_at)} UTC a kWh in {dirtiest} emits {ratio:.1f}× what it "
            f"emits in {cleanest} (synthetic figures).\nNext: caftm intensity forecast --zone "
            "aws:eu-west-3 --plot fr.png   |   caftm regions --gpu   |   caftm zones",
            soft_wrap=True,
        )
