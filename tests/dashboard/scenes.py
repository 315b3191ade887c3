"""A second known ledger: job ``nap`` pauses in place while the grid is dirty, then resumes.

One site, AA, read from a small trace written beside the ledger: 522 gCO2eq/kWh from 12:00 to
17:59 UTC, 265 from 18:00. Leg 1 measures 4 half-hour windows (12:00-14:00) at 522, the last
three at the optimiser's probe clock 1875 MHz; then the optimiser settles at 1740 MHz (an event
at the same time as the last window) and the run ends "paused" until 18:00. Built with
``resumed``, leg 2 measures 4 windows at 265 from 18:00 and the job is running again.

A job ``other`` with one window stands beside it (a second writer for the ETag tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from caftm.ledger import JobBook, JobStatus, Ledger, LegStatus
from caftm.records import Event, State

START = datetime(2026, 6, 15, 12, tzinfo=UTC)
RESUME = datetime(2026, 6, 15, 18, tzinfo=UTC)
WINDOW_S = 1800.0
ENERGY_J = 180_000.0  # 100 W over 1800 s: 0.05 kWh
DIRTY, CLEAN = 522.0, 265.0


def spec(name: str, trace: Path) -> dict[str, object]:
    return {
        "job": {"name": name, "command": ["python", "-c", "pass"], "executor": "local"},
        "controller": {
            "sites": [{"name": "AA", "zone": "AA", "region": ""}],
            "site": "AA",
            "threshold": {"mode": "absolute", "value_g_per_kwh": 400.0},
            "signals": {"source": "trace", "trace_path": str(trace)},
            "total_steps": 2000,
        },
        "path": None,
    }


@dataclass
class Nap:
    """The ledger, its trace, the runs of ``nap`` and the run of ``other``."""

    path: Path
    trace: Path
    run_ids: list[str]
    other_run: str


def write_trace(path: Path) -> Path:
    lines = ["datetime_utc,AA"]
    for hour in range(24 * 2):
        t = datetime(2026, 6, 15, tzinfo=UTC) + timedelta(hours=hour)
        value = DIRTY if t < RESUME else CLEAN
        lines.append(f"{t:%Y-%m-%d %H:%M:%S},{value}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _window(ledger: Ledger, run: str, t: datetime, setting: float, ci: float) -> None:
    ledger.record_window(
        run, time=t, duration_s=WINDOW_S, steps=50, setting=setting, knob="clock",
        energy_j=ENERGY_J, intensity_g_per_kwh=ci, site="AA", phase="train",
    )  # fmt: skip


def build_nap(folder: Path, *, resumed: bool) -> Nap:
    """Write job ``nap`` (and ``other``) into a new ledger in ``folder``."""
    path, trace = folder / "nap.sqlite", write_trace(folder / "trace.csv")
    runs = []
    with Ledger(path) as ledger:
        book = JobBook(ledger)
        book.create("nap", site="AA", store_url=str(folder / "store"), executor="local",
                    spec=spec("nap", trace))  # fmt: skip
        book.start_leg("nap", 1, site="AA", executor="local", start_step=None)
        book.update("nap", status=JobStatus.RUNNING, leg=1)
        run = ledger.start_run(name="nap", policy="caftm", site="AA", started_at=START,
                               simulated=True, job="nap", leg=1)  # fmt: skip
        runs.append(run)
        ledger.record_event(run, Event(START, State.SCALING, State.SCALING, "run started",
                                       DIRTY, "AA", None))  # fmt: skip
        t = START
        for setting in (1740.0, 1875.0, 1875.0, 1875.0):
            t += timedelta(seconds=WINDOW_S)
            _window(ledger, run, t, setting, DIRTY)
        ledger.record_event(
            run,
            Event(
                t, State.SCALING, State.TOLERANCE, "optimiser settled at 1740", DIRTY, "AA", 1740.0
            ),
        )
        ledger.record_event(
            run,
            Event(t, State.TOLERANCE, State.PAUSED, "intensity 522 ≥ θ 400", DIRTY, "AA", 1740.0),
        )
        ledger.record_event(run, Event(t, State.PAUSED, State.DONE, "run ended: paused",
                                       DIRTY, "AA", 1740.0))  # fmt: skip
        book.end_leg("nap", 1, LegStatus.PAUSED, end_step=200)
        book.count("nap", "pauses")
        book.update("nap", status=JobStatus.PAUSED, pause_until=RESUME, step=200,
                    message="paused: cleaner at 18:00")  # fmt: skip
        book.create("other", site="AA", store_url=str(folder / "store2"), executor="local",
                    spec=spec("other", trace))  # fmt: skip
        other = ledger.start_run(name="other", policy="caftm", site="AA", started_at=START,
                                 simulated=True, job="other", leg=1)  # fmt: skip
        _window(ledger, other, START + timedelta(seconds=WINDOW_S), 1740.0, DIRTY)
    nap = Nap(path, trace, runs, other)
    if resumed:
        resume_nap(nap)
    return nap


def resume_nap(nap: Nap) -> None:
    """Leg 2: the job runs again from 18:00, 4 windows at 265."""
    with Ledger(nap.path) as ledger:
        book = JobBook(ledger)
        book.start_leg("nap", 2, site="AA", executor="local", start_step=200)
        book.update("nap", status=JobStatus.RUNNING, leg=2, pause_until=None, message="")
        run = ledger.start_run(name="nap", policy="caftm", site="AA", started_at=RESUME,
                               simulated=True, job="nap", leg=2)  # fmt: skip
        nap.run_ids.append(run)
        ledger.record_event(run, Event(RESUME, State.SCALING, State.TOLERANCE, "run started",
                                       CLEAN, "AA", 1740.0))  # fmt: skip
        t = RESUME
        for _ in range(4):
            t += timedelta(seconds=WINDOW_S)
            _window(ledger, run, t, 1740.0, CLEAN)


def write_other(nap: Nap, k: int) -> None:
    """One more window of job ``other`` (another job writing while ``nap`` is watched)."""
    with Ledger(nap.path) as ledger:
        _window(ledger, nap.other_run, START + timedelta(seconds=WINDOW_S * (k + 2)), 1740.0,
                DIRTY)  # fmt: skip
