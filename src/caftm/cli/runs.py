"""``caftm runs`` and ``caftm events RUN``: what the ledger recorded.

The commands open the ledger (``--db``, else ``$CAFTM_LEDGER``, else
~/.local/share/caftm/ledger.sqlite), call :mod:`caftm.ledger` and render rich tables.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated

import typer
from rich.table import Table

from caftm._units import J_PER_KWH
from caftm.cli._common import console
from caftm.errors import ConfigError
from caftm.ledger import Ledger, default_ledger_path, ledger_location, ledger_missing

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Ledger file or postgresql:// URL (default: $CAFTM_LEDGER or ~/.local/share/caftm).",
    ),
]


def _open(db: str | None) -> Ledger:
    path = ledger_location(db) if db is not None else default_ledger_path()
    if ledger_missing(path):  # a directory or a foreign file is refused by Ledger
        raise ConfigError(
            f"no ledger at {path}; a run with a ledger creates it (or pass --db / set CAFTM_LEDGER)"
        )
    return Ledger(path)


def _time(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _number(value: float | None, fmt: str) -> str:
    """``value`` in ``fmt``; small non-zero values keep three significant digits instead."""
    if value is None or not math.isfinite(value):
        return "—"
    text = format(value, fmt)
    if value != 0 and float(text) == 0:
        return format(value, ".3g")
    return text


def runs_command(db: DbOption = None) -> None:
    """List the runs in the ledger, newest first, with their energy and carbon."""
    with _open(db) as ledger:
        ledger.reap_dead_runs()  # a killed run cannot close itself: never show it running
        runs = ledger.runs()
        table = Table(title=f"runs in {ledger.shown}")
        for column in ("run", "name", "policy", "site", "started (UTC)", "ended (UTC)", "status"):
            table.add_column(column)
        for column in ("steps", "events", "energy kWh", "carbon g"):
            table.add_column(column, justify="right")
        for run in runs:
            energy_kwh = None if run.energy_j is None else run.energy_j / J_PER_KWH
            status = run.status + (" (simulated)" if run.simulated else "")
            table.add_row(
                run.run_id,
                run.name,
                run.policy,
                run.site,
                _time(run.started_at),
                _time(run.ended_at),
                status,
                str(run.steps),
                str(run.events),
                _number(energy_kwh, ".4f"),
                _number(run.carbon_g, ".1f"),
            )
    console.print(table)
    if not runs:
        console.print("no runs recorded yet")


def events_command(
    run: Annotated[str, typer.Argument(help="Run id (or a unique prefix), see `caftm runs`.")],
    db: DbOption = None,
) -> None:
    """Show a run's controller transitions, oldest first."""
    with _open(db) as ledger:
        run_id = ledger.resolve_run(run)
        events = ledger.events(run_id)
    table = Table(title=f"events of run {run_id}")
    for column in ("time (UTC)", "from", "to", "site"):
        table.add_column(column)
    table.add_column("CI g/kWh", justify="right")
    table.add_column("setting", justify="right")
    table.add_column("reason")
    for event in events:
        table.add_row(
            _time(event.time),
            event.from_state.value,
            event.to_state.value,
            event.site,
            _number(event.intensity_g_per_kwh, ".0f"),
            _number(event.gpu_setting, "g"),
            event.reason,
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``runs`` and ``events`` to ``app``."""
    app.command("runs")(runs_command)
    app.command("events")(events_command)
