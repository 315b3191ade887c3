"""``caftm demo``: the embedded intensities now, then the main job run through the supervisor.

First what every decision reads (how much CO2 a kWh costs now in a few zones, and when in the
next day it is cleanest), then :mod:`caftm.demo.showcase`: a small CNN trained carbon-aware
through ``caftm run``'s supervisor and local executor, on an accelerated clock and the SIMULATED
GPU, against carbon-agnostic twins — with a comparison table, a PNG timeline and, with
``--json``, the comparison as JSON. ``--no-train`` shows the intensities only.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from caftm.cli._common import console
from caftm.cli._render import SYNTHETIC_NOTE, format_time, summarise
from caftm.cli.jobs import progress_line
from caftm.errors import ConfigError
from caftm.regions import Catalog

if TYPE_CHECKING:
    from caftm.demo.showcase import DemoResult
    from caftm.jobs.view import JobView

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
    train: Annotated[
        bool, typer.Option("--train/--no-train", help="Run the demo jobs after the table.")
    ] = True,
    workdir: Annotated[
        Path, typer.Option("--workdir", help="Where the demo's jobs, stores and ledger go.")
    ] = Path(".caftm/demo"),
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the comparison as JSON here.")
    ] = None,
    speed: Annotated[
        float,
        typer.Option(
            "--speed",
            help="Grid seconds per wall second of training or "
            "pause (1800: 1 s = 30 min; 1× while processes start and checkpoints move).",
        ),
    ] = 1800.0,
) -> None:
    """Embedded intensities now and the next 24 h, then the main job run carbon-aware."""
    if train:
        _check_outputs(workdir, json_path, speed)
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
    if train:
        _train(workdir, json_path, speed)


def _check_outputs(workdir: Path, json_path: Path | None, speed: float) -> None:
    """Refuse, before any work, outputs that cannot be written and absurd speeds."""
    import math

    if not math.isfinite(speed) or not 1.0 <= speed <= 1e6:
        raise ConfigError(f"--speed must be between 1 and 1e6 grid seconds per second, got {speed}")
    for folder in (workdir, *(() if json_path is None else (json_path.parent,))):
        existing = next(p for p in (folder.resolve(), *folder.resolve().parents) if p.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise ConfigError(f"cannot write under {folder}: {existing} is not a writable folder")


def _train(workdir: Path, json_path: Path | None, speed: float) -> None:
    import shutil

    from caftm.demo.showcase import run_showcase

    for stale in ("jobs", "ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm"):
        path = workdir / stale  # the previous demo's, not anything else in the folder
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    console.print(
        f"\n[bold]Training[/] four small jobs through the supervisor (local executor), "
        f"{speed:g} grid seconds per wall second, SIMULATED GPU, SYNTHETIC intensities:\n"
        "  move / move-agnostic: start in KR among KR, JP-TK, DE, FR, CA-ON\n"
        "  wait / wait-agnostic: DE only, under a deadline",
        highlight=False,
    )
    lines: dict[str, Text] = {}

    def show(name: str, view: JobView) -> None:
        lines[name] = progress_line(view)
        live.update(Group(*(lines[k] for k in sorted(lines))))

    with Live(Text(""), console=console, refresh_per_second=4, transient=True) as live:
        result = run_showcase(workdir, speed=speed, on_update=show)
    console.print(comparison_table(result))
    console.print(pause_line(result), highlight=False)
    if json_path is not None:
        json_path.write_text(json.dumps(result.to_json(), indent=2), encoding="utf-8")
        console.print(f"comparison written to {json_path}")
    if result.timeline_png:
        console.print(f"timeline: {result.timeline_png}")
    console.print(
        f"ledger: caftm jobs --db {workdir / 'ledger.sqlite'}  (then caftm status move --db ...)",
        highlight=False,
    )


def pause_line(result: DemoResult) -> str:
    """What the pausing job saved against its twin, and whether it met its deadline."""
    wait = result.jobs["wait"]
    met = "met" if result.deadline_met else "MISSED"
    return (
        f"pause: job wait saved {result.pause_saving_pct:.1f} % carbon against wait-agnostic "
        f"and {met} its deadline (completed {_clock_text(wait['completed_at'])}, deadline "
        f"{_clock_text(wait['deadline'])}, on the job's clock)"
    )


def _clock_text(iso: str | None) -> str:
    from datetime import datetime

    return "never" if iso is None else format_time(datetime.fromisoformat(iso)) + " UTC"


def comparison_table(result: DemoResult) -> Table:
    """caftm against carbon-agnostic: carbon, energy, completion, moves, pauses, parameters."""
    table = Table(
        title="caftm against carbon-agnostic (SIMULATED GPU, SYNTHETIC intensities)",
        title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True,
    )  # fmt: skip
    longest = max((len(name) for name in result.jobs), default=3)
    table.add_column("job", no_wrap=True, min_width=longest)  # a job's name is never cut
    for column in ("carbon g", "energy kWh", "done after", "moves", "pauses", "clock changes"):
        table.add_column(column, justify="right")
    table.add_column("sites", overflow="fold")
    for name, job in result.jobs.items():
        table.add_row(
            name, f"{job['carbon_g']:.3f}", f"{job['energy_j'] / 3.6e6:.4f}",
            f"{job['jct_h']:.1f} h", str(job["moves"]), str(job["pauses"]),
            str(job["clock_changes"]), " → ".join(dict.fromkeys(job["sites"])),
        )  # fmt: skip
    saving = 1 - result.caftm_carbon_g / result.agnostic_carbon_g if result.agnostic_carbon_g else 0
    same = "bit-identical" if result.params_identical else "DIFFERENT"
    table.caption = (
        f"carbon-aware {result.caftm_carbon_g:.3f} g vs agnostic {result.agnostic_carbon_g:.3f} g "
        f"({saving:.0%} less); final parameters {same} to the agnostic runs'; "
        f"wall time {result.wall_s:.0f} s for all four jobs"
    )
    table.caption_justify = "left"
    return table
