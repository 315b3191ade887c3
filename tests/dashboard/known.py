"""A small ledger holding one known job, built with the ledger's own API (no demo run needed).

Job ``known``: sites KR and FR (embedded profiles), θ 400, SIMULATED GPU.

- leg 1 at KR: 6 windows at 1755 MHz, 500 g/kWh; scaling → tolerance → suspend → migration,
  then the run ends "moved" → a move KR → FR (transfer recorded);
- leg 2 at FR: 4 windows at 1800 MHz, 60 g/kWh; the run ends "paused";
- leg 3 at FR: 3 windows, 40 g/kWh; still running (status RUNNING, controller in tolerance).

So: site FR, status running, 1 move, 1 pause, 13 windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from caftm.ledger import JobBook, JobStatus, Ledger, LegStatus, TransferRecord, TransferStatus
from caftm.records import Event, State

START = datetime(2026, 6, 15, 12, tzinfo=UTC)
WINDOW_S = 600.0
ENERGY_J = 180_000.0  # 300 W over 600 s

SPEC = {
    "job": {"name": "known", "command": ["python", "-c", "pass"], "executor": "local"},
    "controller": {
        "sites": [
            {"name": "KR", "zone": "KR", "region": ""},
            {"name": "FR", "zone": "FR", "region": ""},
        ],
        "site": None,
        "threshold": {"mode": "absolute", "value_g_per_kwh": 400.0},
        "signals": {"source": "profile", "trace_path": None},
        "total_steps": 2000,
    },
    "path": None,
}


@dataclass
class Known:
    """The ledger and what it holds."""

    path: Path | str
    run_ids: list[str]
    next_time: datetime


def _event(
    book: Ledger,
    run: str,
    t: datetime,
    a: State,
    b: State,
    reason: str,
    ci: float,
    site: str,
    setting: float | None,
) -> None:
    book.record_event(run, Event(t, a, b, reason, ci, site, setting))


def build_known(path: Path | str, *, store_dir: Path | None = None) -> Known:
    """Write the known job into a new ledger at ``path`` (a file, or a PostgreSQL URL with
    ``store_dir`` for the job's store)."""
    t = START
    with Ledger(path) as ledger:
        book = JobBook(ledger)
        book.create(
            "known",
            site="KR",
            store_url=str((store_dir or Path(path).parent) / "store"),
            executor="local",
            spec=SPEC,
        )
        runs = []
        plan = [
            ("KR", 1755.0, 500.0, 6, "moved"),
            ("FR", 1800.0, 60.0, 4, "paused: cleaner later"),
            ("FR", 1800.0, 40.0, 3, None),
        ]
        for leg, (site, setting, ci, n, ending) in enumerate(plan, 1):
            book.start_leg("known", leg, site=site, executor="local", start_step=0)
            run = ledger.start_run(
                name="known",
                policy="caftm",
                site=site,
                started_at=t,
                simulated=True,
                job="known",
                leg=leg,
            )
            runs.append(run)
            _event(ledger, run, t, State.SCALING, State.SCALING, "run started", ci, site, None)
            for i in range(n):
                t += timedelta(seconds=WINDOW_S)
                ledger.record_window(
                    run,
                    time=t,
                    duration_s=WINDOW_S,
                    steps=50,
                    setting=setting,
                    knob="clock",
                    energy_j=ENERGY_J,
                    intensity_g_per_kwh=ci,
                    site=site,
                    phase="train",
                )
                if i == 0:
                    _event(
                        ledger,
                        run,
                        t,
                        State.SCALING,
                        State.TOLERANCE,
                        f"optimiser settled at {setting}",
                        ci,
                        site,
                        setting,
                    )
            if ending == "moved":
                _event(
                    ledger,
                    run,
                    t,
                    State.TOLERANCE,
                    State.SUSPEND,
                    "intensity 500 ≥ θ 400",
                    ci,
                    site,
                    setting,
                )
                _event(
                    ledger,
                    run,
                    t,
                    State.SUSPEND,
                    State.MIGRATION,
                    "checkpoint complete",
                    ci,
                    site,
                    setting,
                )
                _event(
                    ledger,
                    run,
                    t,
                    State.MIGRATION,
                    State.DONE,
                    "run ended: moved",
                    ci,
                    site,
                    setting,
                )
                book.end_leg("known", leg, LegStatus.MOVED, end_step=300)
                book.record_transfer(
                    TransferRecord(
                        "known",
                        leg,
                        t,
                        "KR",
                        "FR",
                        "a",
                        "b",
                        300,
                        1000,
                        0.5,
                        TransferStatus.DONE,
                        "",
                    )
                )
                book.count("known", "moves")
                t += timedelta(hours=1)
            elif ending is not None:
                _event(
                    ledger,
                    run,
                    t,
                    State.MIGRATION,
                    State.DONE,
                    f"run ended: {ending}",
                    ci,
                    site,
                    setting,
                )
                book.end_leg("known", leg, LegStatus.PAUSED, end_step=500)
                book.count("known", "pauses")
                t += timedelta(hours=3)
        book.update("known", status=JobStatus.RUNNING, site="FR", leg=3, step=650)
    return Known(path, runs, t)


def append_window(path: Path | str, run_id: str, time: datetime, *, ci: float = 35.0) -> None:
    """Add one window and one event to the running leg, as its worker would."""
    with Ledger(path) as ledger:
        ledger.record_window(
            run_id,
            time=time,
            duration_s=WINDOW_S,
            steps=50,
            setting=1815.0,
            knob="clock",
            energy_j=ENERGY_J,
            intensity_g_per_kwh=ci,
            site="FR",
            phase="train",
        )
        ledger.record_event(
            run_id,
            Event(
                time,
                State.TOLERANCE,
                State.SCALING,
                "intensity moved: re-optimise",
                ci,
                "FR",
                1815.0,
            ),
        )


def ledger_totals(path: Path | str) -> tuple[float, float, int, str, str, int, int]:
    """(carbon g, energy J, windows, site, status, moves, pauses) read straight from sqlite."""
    with Ledger(path, read_only=True) as ledger:
        book = JobBook(ledger)
        job = book.get("known")
        totals = book.totals("known")
        energy, carbon = totals.energy_j, totals.carbon_g
        (n,) = ledger._read(
            "SELECT COUNT(*) FROM windows WHERE run_id IN (SELECT run_id FROM runs WHERE job = ?)",
            ("known",),
        )[0]
        return (
            carbon or 0.0,
            energy or 0.0,
            int(n),
            job.site,
            job.status.value,
            job.moves,
            job.pauses,
        )
