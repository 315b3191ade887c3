"""The demo figure, read back from its artists: moves, pauses, GPU setting, carbon against the
carbon-agnostic twin, and no line across a gap between legs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import pytest
from tests.demo.figure_support import (
    data_lines,
    finite_points,
    joins_across_legs,
    leg_of_time,
    spans_x,
)

from caftm.demo.figure import demo_figure, job_track, plot_demo
from caftm.errors import ConfigError
from caftm.ledger import JobBook, Ledger
from caftm.records import Event, State

START = datetime(2026, 6, 15, 15, tzinfo=UTC)
WINDOW = timedelta(minutes=10)
DEADLINE = START + timedelta(hours=40)


def _spec(name: str) -> dict[str, object]:
    return {
        "job": {"name": name, "command": ["python", "-c", "pass"]},
        "controller": {
            "threshold": {"mode": "absolute", "value_g_per_kwh": 400.0},
            "policy": {"name": "caftm", "deadline": DEADLINE.isoformat()},
        },
    }


def _leg(ledger: Ledger, name: str, leg: int, site: str, t: datetime,
         windows: list[tuple[float | None, float]], end: str) -> datetime:  # fmt: skip
    """One leg: a start event, its windows ``(setting, intensity)`` and its end event."""
    run = ledger.start_run(name=name, policy="caftm", site=site, started_at=t, simulated=True,
                           job=name, leg=leg)  # fmt: skip
    started = Event(t, State.SCALING, State.SCALING, "run started", 500.0, site, None)
    ledger.record_event(run, started)
    for setting, ci in windows:
        t += WINDOW
        ledger.record_window(run, time=t, duration_s=60.0, steps=50, setting=setting,
                             knob="clock", energy_j=36_000.0, intensity_g_per_kwh=ci, site=site,
                             phase="tolerance")  # fmt: skip
    ended = Event(t, State.MIGRATION, State.DONE, f"run ended: {end}", ci, site, None)
    ledger.record_event(run, ended)
    return t


@pytest.fixture
def book(tmp_path: Path) -> JobBook:
    """``aware``: KR (2 windows) → moves → FR (3) → pauses 8 h → FR (3); ``twin``: KR (8)."""
    ledger = Ledger(tmp_path / "ledger.sqlite")
    book = JobBook(ledger)
    for name in ("aware", "twin"):
        book.create(name, site="KR", store_url="memory://x", executor="local", spec=_spec(name))
    t = _leg(ledger, "aware", 1, "KR", START, [(1980.0, 500.0), (1755.0, 500.0)], "moved")
    t = _leg(ledger, "aware", 2, "FR", t + timedelta(seconds=12),
             [(1755.0, 60.0), (1800.0, 70.0), (1800.0, 450.0)], "paused")  # fmt: skip
    _leg(ledger, "aware", 3, "FR", t + timedelta(hours=8), [(1800.0, 40.0)] * 3, "completed")
    _leg(ledger, "twin", 1, "KR", START, [(None, 500.0)] * 8, "completed")
    yield book
    ledger.close()


def test_the_demo_figure_shows_moves_pauses_gpu_and_carbon_without_joining_legs(
    book: JobBook,
) -> None:
    fig = demo_figure(book, [("aware", "twin")])
    try:
        where, gpu, carbon = fig.axes
        legs = leg_of_time(book, "aware")
        # intensity where it ran: one line per site, none joining two legs (move, pause)
        lines = {str(line.get_label()): line for line in data_lines(where)}
        assert set(lines) == {"at KR", "at FR"}
        assert finite_points(lines["at KR"]) == 2 and finite_points(lines["at FR"]) == 6
        for line in [*lines.values(), *data_lines(gpu), *data_lines(carbon)]:
            assert joins_across_legs(line, legs | leg_of_time(book, "twin")) == [], line
        # the pause: a grey band from leg 2's end to leg 3's start, on every panel
        track = job_track(book, "aware")
        (pause,) = track.pauses
        band = (round(mdates.date2num(pause[0]), 6), round(mdates.date2num(pause[1]), 6))
        assert all(band in spans_x(ax) for ax in (where, gpu, carbon))
        assert pause[1] - pause[0] == timedelta(hours=8)
        # the move: a dashed line where it left, labelled with its duration on the job's clock
        (move,) = track.moves
        assert move[2:] == ("KR", "FR") and move[1] - move[0] == timedelta(seconds=12)
        x = mdates.date2num(move[0])
        assert any(list(line.get_xdata()) == [x, x] for line in where.get_lines())
        assert "KR → FR (12 s)" in [t.get_text() for t in where.texts]
        # the deadline, marked
        deadline = mdates.date2num(DEADLINE)
        assert any(list(line.get_xdata()) == [deadline, deadline] for line in where.get_lines())
        # the GPU setting it trained at, step by step
        (setting,) = data_lines(gpu)
        drawn = {v for v in setting.get_ydata() if v == v}
        assert drawn == {1980.0, 1755.0, 1800.0}
        # carbon so far against the twin: ends at each job's ledger total
        aware_line, twin_line = data_lines(carbon)
        for line, name in ((aware_line, "aware"), (twin_line, "twin")):
            ys = [y for y in line.get_ydata() if y == y]
            assert ys[-1] == pytest.approx(book.totals(name).carbon_g)
            assert ys == sorted(ys)  # so far: never decreasing
        assert ys[-1] > [y for y in aware_line.get_ydata() if y == y][-1]  # the twin's is more
    finally:
        plt.close(fig)


def test_the_demo_figure_is_written_and_an_unknown_job_is_refused(
    book: JobBook, tmp_path: Path
) -> None:
    png = plot_demo(book, [("aware", "twin")], tmp_path / "demo.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="nobody"):
        demo_figure(book, [("aware", "nobody")])
    with pytest.raises(ConfigError, match="cannot write the demo figure"):
        plot_demo(book, [("aware", "twin")], tmp_path / "missing" / "demo.png")
