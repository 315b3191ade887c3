"""Where nothing ran, on an accelerated job clock: windows lie 900 s apart on the job's clock but
each measures about 2 GPU seconds, so only a move, a recorded pause or a long silence is a gap.

Job ``fast`` (SIMULATED GPU), built with the ledger's own API:

- leg 1 at AA: 2 profiling windows 200 s apart (0.4 GPU s each), then 4 windows 900 s apart
  (1.8 to 2.2 GPU s), at 500 g/kWh; the run ends "moved";
- leg 2 at BB, 30 s later: 3 windows 900 s apart at 100 g/kWh, then a pause *within the run*
  (tolerance → paused, 45 min later paused → scaling: only its events tell it), then 3 more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from caftm.ledger import JobBook, JobStatus, Ledger
from caftm.ledger.feed import Scope
from caftm.records import Event, State
from caftm.report.timeline import WindowGaps, job_timeline

START = datetime(2026, 6, 15, 12, tzinfo=UTC)
SPACING = timedelta(seconds=900)
PAUSE = timedelta(minutes=45)  # a span of 3600 s: under 5× the pace, so only the events tell
DIRTY, CLEAN = 500.0, 100.0
LEG_1 = [(timedelta(seconds=200), 0.4, "scaling")] * 2 + [
    (SPACING, d, "tolerance") for d in (1.8, 2.2, 1.9, 2.1)
]


def _spec(trace: Path) -> dict[str, object]:
    return {
        "job": {"name": "fast", "command": ["python", "-c", "pass"], "executor": "local"},
        "controller": {
            "sites": [{"name": s, "zone": s, "region": ""} for s in ("AA", "BB")],
            "site": "AA",
            "threshold": {"mode": "absolute", "value_g_per_kwh": 400.0},
            "signals": {"source": "trace", "trace_path": str(trace)},
            "total_steps": 2000,
        },
        "path": None,
    }


def _trace(path: Path) -> Path:
    lines = ["datetime_utc,AA,BB"]
    for hour in range(48):
        t = datetime(2026, 6, 15, tzinfo=UTC) + timedelta(hours=hour)
        lines.append(f"{t:%Y-%m-%d %H:%M:%S},{DIRTY},{CLEAN}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _windows(ledger: Ledger, run: str, t: datetime, site: str, ci: float,
             windows: list[tuple[timedelta, float, str]]) -> datetime:  # fmt: skip
    for step, duration, phase in windows:
        t += step
        ledger.record_window(run, time=t, duration_s=duration, steps=50, setting=1800.0,
                             knob="clock", energy_j=300.0 * duration, intensity_g_per_kwh=ci,
                             site=site, phase=phase)  # fmt: skip
    return t


def _event(ledger: Ledger, run: str, t: datetime, a: State, b: State, why: str, site: str) -> None:
    ledger.record_event(run, Event(t, a, b, why, DIRTY if site == "AA" else CLEAN, site, 1800.0))


@dataclass
class Fast:
    """The ledger, leg 2's run and when it paused."""

    path: Path
    run: str
    paused: datetime


def build_fast(folder: Path, *, second_half: bool = True) -> Fast:
    """Write job ``fast`` into a new ledger in ``folder`` (its pause and the windows after it
    only when ``second_half``)."""
    path = folder / "fast.sqlite"
    with Ledger(path) as ledger:
        book = JobBook(ledger)
        book.create("fast", site="AA", store_url=str(folder / "store"), executor="local",
                    spec=_spec(_trace(folder / "trace.csv")))  # fmt: skip
        book.update("fast", status=JobStatus.RUNNING, leg=1)
        run = ledger.start_run(name="fast", policy="caftm", site="AA", started_at=START,
                               simulated=True, job="fast", leg=1)  # fmt: skip
        _event(ledger, run, START, State.SCALING, State.SCALING, "run started", "AA")
        t = _windows(ledger, run, START, "AA", DIRTY, LEG_1)
        _event(ledger, run, t, State.TOLERANCE, State.SUSPEND, "intensity 500 ≥ θ 400", "AA")
        _event(ledger, run, t, State.MIGRATION, State.SCALING, "move to BB", "AA")
        _event(ledger, run, t, State.SCALING, State.DONE, "run ended: moved", "AA")
        t += timedelta(seconds=30)
        book.update("fast", leg=2, site="BB")
        run = ledger.start_run(name="fast", policy="caftm", site="BB", started_at=t,
                               simulated=True, job="fast", leg=2)  # fmt: skip
        _event(ledger, run, t, State.SCALING, State.TOLERANCE, "run started", "BB")
        t = _windows(ledger, run, t, "BB", CLEAN, [(SPACING, 2.0, "tolerance")] * 3)
    fast = Fast(path, run, t)
    if second_half:
        add_after_pause(fast)
    return fast


def add_after_pause(fast: Fast) -> None:
    """Leg 2's pause (its two events) and the 3 windows after it."""
    with Ledger(fast.path) as ledger:
        t = fast.paused
        _event(ledger, fast.run, t, State.TOLERANCE, State.PAUSED, "pausing until clean", "BB")
        t += PAUSE
        _event(ledger, fast.run, t, State.PAUSED, State.SCALING, "planned pause over", "BB")
        _windows(ledger, fast.run, t, "BB", CLEAN, [(SPACING, 2.0, "tolerance")] * 3)


def test_the_timeline_breaks_only_at_the_move_and_the_pause(tmp_path: Path) -> None:
    fast = build_fast(tmp_path)
    with Ledger(fast.path, read_only=True) as ledger:
        timeline = job_timeline(JobBook(ledger), "fast")
    assert len(timeline.points) == 6 + 3 + 3
    assert [k for k, gap in enumerate(timeline.gaps) if gap] == [6, 9]  # the move, the pause
    assert timeline.points[6][1] == "BB" and timeline.points[5][1] == "AA"


def test_the_dashboard_draws_each_stretch_as_one_connected_line(tmp_path: Path) -> None:
    pytest.importorskip("starlette", reason="the dashboard extra is not installed")
    from caftm.dashboard.model import Board

    fast = build_fast(tmp_path, second_half=False)
    board = Board(fast.path)
    try:
        _, before = board.view(Scope.of_job("fast"))
        assert before["series"]["intensity"] == [DIRTY] * 6 + [None] + [CLEAN] * 3
        add_after_pause(fast)  # incremental: the pause and the windows after it, in one read
        _, view = board.view(Scope.of_job("fast"))
    finally:
        board.close()
    series = view["series"]
    assert series["intensity"] == [DIRTY] * 6 + [None] + [CLEAN] * 3 + [None] + [CLEAN] * 3
    nulls = [k for k, v in enumerate(series["intensity"]) if v is None]
    assert all(series[key][k] is None for key in series if key != "t" for k in nulls)
    drawn = [k for k in range(len(series["t"])) if k not in nulls]
    assert all(series["power_w"][k] is not None for k in drawn)
    fresh = Board(fast.path)
    try:  # read at once, the same view
        assert fresh.view(Scope.of_job("fast"))[1]["series"] == series
    finally:
        fresh.close()


def test_without_events_a_long_silence_is_a_gap_and_the_clock_s_pace_is_not() -> None:
    gaps = WindowGaps()
    end = START.timestamp()
    found = []
    for k in range(8):  # 900 s apart, ~2 GPU s each; a silence of 4 h before window 5
        end += 900.0 + (4 * 3600.0 if k == 5 else 0.0)
        found.append(gaps.before(end, 1.8 + 0.1 * (k % 3), "run"))
    assert [k for k, gap in enumerate(found) if gap] == [5]
    real = WindowGaps()  # the real clock: windows back to back, then idle 10 windows long
    ends = [60.0, 121.0, 182.0, 243.0, 304.0 + 600.0, 965.0]
    assert [real.before(e, 60.0, "run") for e in ends] == [False] * 4 + [True, False]
