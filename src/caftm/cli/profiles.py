"""``caftm profiles build``: a user's own profile set from exports or traces.

The set is read back with ``--provider profile:PATH`` or ``signals.source: profile:PATH``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from caftm.cli._common import console
from caftm.cli._render import probe_writable
from caftm.errors import ConfigError
from caftm.signals.base import Basis


def register(app: typer.Typer) -> None:
    """Add the ``profiles`` group to ``app``."""
    profiles = typer.Typer(
        help="Typical-year profile sets (the keyless signal): build your own.",
        no_args_is_help=True,
    )
    profiles.command("build")(build_command)
    app.add_typer(profiles, name="profiles")


def build_command(
    sources: Annotated[
        list[Path],
        typer.Option(
            "--from",
            help="Hourly trace file(s): Electricity Maps export, wide/long CSV, date+hour CSV, "
            "Parquet (repeat --from for several).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="The profile set to write (.json).")],
    zones: Annotated[
        list[str] | None, typer.Option("--zone", "-z", help="Only these zones (repeatable).")
    ] = None,
    year: Annotated[
        int | None,
        typer.Option("--year", help="UTC year to use [default: each zone's latest complete one]."),
    ] = None,
    basis: Annotated[
        str, typer.Option("--basis", help="lifecycle or direct, where a file has both.")
    ] = "lifecycle",
) -> None:
    """Build a profile set from whole UTC years of hourly values (statistics only, no series)."""
    from caftm.signals.profile_build import build_profile_set
    from caftm.signals.traces import load_trace

    try:
        wanted_basis = Basis(basis.strip().lower())
    except ValueError as e:
        raise ConfigError(f"--basis {basis!r}: use lifecycle or direct") from e
    if out.suffix.lower() != ".json":
        raise ConfigError(f"--out {out}: give a file name ending in .json")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise ConfigError(f"--out {out}: folder {out.parent} does not exist; create it first")
    probe_writable(out, option="--out")
    if year is not None and not 1 <= year <= 9998:
        raise ConfigError(f"--year {year}: give a year in 1..9998")
    trace = load_trace(sources, basis=wanted_basis, zones=zones or None)
    document, skipped = build_profile_set(trace, zones=zones or None, year=year)
    try:
        out.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot write --out {out}: {e.strerror or e}") from e
    table = Table(
        title=f"profile set {out}: {len(document['zones'])} zone(s), year {document['year']}, "
        f"{document['basis']} basis",
        title_justify="left",
    )
    for column in ("zone", "mean g/kWh", "daily swing g/kWh"):
        table.add_column(column, justify="left" if column == "zone" else "right")
    for zone, stats in document["zones"].items():
        table.add_row(zone, f"{stats['yearly_mean']:.0f}", f"{stats['daily_amplitude']:.0f}")
    console.print(table)
    for note in trace.take_notes() + skipped:
        console.print(f"Note: {note}", style="yellow", soft_wrap=True, markup=False)
    console.print(
        f"use it with --provider profile:{out} or, in a config, signals.source: profile:{out}",
        soft_wrap=True,
        markup=False,
    )
