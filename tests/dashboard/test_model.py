"""The dashboard's view of the known job matches the ledger; it follows appended rows."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from tests.dashboard.known import (
    ENERGY_J,
    SPEC,
    START,
    WINDOW_S,
    Known,
    append_window,
    ledger_totals,
)
from tests.dashboard.scenes import CLEAN, DIRTY, RESUME, build_nap, write_other
from tests.dashboard.scenes import ENERGY_J as NAP_ENERGY_J
from tests.dashboard.scenes import START as NAP_START

from caftm.errors import ConfigError
from caftm.ledger import JobBook, JobStatus, Ledger
from caftm.ledger.feed import Scope
from caftm.ledger.schema import _V1
from caftm.signals.profiles import ProfileSource

pytest.importorskip("starlette", reason="the dashboard extra is not installed")

from caftm.dashboard.model import Board, thin
from caftm.dashboard.series import gapped_index


def test_view_of_the_known_job(known: Known) -> None:
    carbon, energy, n, site, status, moves, pauses = ledger_totals(known.path)
    assert carbon == pytest.approx(6 * 25 + 4 * 3 + 3 * 2)
    board = Board(known.path)
    try:
        mark, view = board.view(Scope.of_job("known"))
        assert (
            (view["site"], view["status"], view["moves"], view["pauses"])
            == (site, status, moves, pauses)
            == ("FR", "running", 1, 1)
        )
        assert view["state"] == "tolerance"
        assert view["totals"]["carbon_g"] == pytest.approx(carbon)
        assert view["totals"]["energy_j"] == pytest.approx(energy) == 13 * ENERGY_J
        assert view["totals"]["windows"] == n == 13
        assert view["gpu"] == {
            "setting": 1800.0,
            "since": "2026-06-15 18:10 UTC",
            "unit": "MHz",
            "knob": "clock",
            "power_w": pytest.approx(300.0),
        }
        assert view["simulated"] and view["synthetic"]
        assert view["threshold_g_per_kwh"] == 400.0
        assert view["sites"] == ["KR", "FR"] and view["start_site"] == "KR"
        # the move KR → FR and the pause, from the runs' events
        assert [(m["from"], m["to"]) for m in view["move_marks"]] == [("KR", "FR")]
        assert len(view["pause_marks"]) == 1
        # baseline: the 13 windows back to back from the first one's start (no move, no pause),
        # each window's energy at KR's (synthetic) intensity when that run reached it
        source = ProfileSource()
        back_to_back = [int(START.timestamp() + WINDOW_S * (k + 1)) for k in range(13)]
        assert view["agnostic_series"]["t"] == back_to_back
        expected = sum(ENERGY_J / 3.6e6 * v for v in source.values_at("KR", back_to_back))
        times = [int(t) for t in view["series"]["t"]]
        assert view["totals"]["agnostic_g"] == pytest.approx(expected)
        assert "estimated" in view["totals"]["agnostic_method"]
        # every candidate site's intensity now and its forecast
        outlook = {o["site"]: o for o in view["outlook"]}
        assert set(outlook) == {"KR", "FR"}
        assert outlook["KR"]["now"] == pytest.approx(source.values_at("KR", [times[-1]])[0])
        assert 0 < outlook["FR"]["forecast_from"] < len(outlook["FR"]["t"])
        assert view["events"][0]["to"] == "tolerance" and view["events_total"] == 5 + 3 + 2
        # unchanged ledger: the same mark and view; one more window: a new mark, the new values
        assert board.view(Scope.of_job("known"))[0] == mark
        append_window(known.path, known.run_ids[2], known.next_time + timedelta(minutes=10))
        mark2, view2 = board.view(Scope.of_job("known"))
        assert mark2 != mark
        assert view2["totals"]["windows"] == 14
        assert view2["totals"]["carbon_g"] == pytest.approx(carbon + ENERGY_J / 3.6e6 * 35.0)
        assert view2["gpu"]["setting"] == 1815.0 and view2["state"] == "scaling"
        jobs = board.jobs()
        assert [(j["name"], j["kind"], j["moves"]) for j in jobs] == [("known", "job", 1)]
        assert jobs[0]["carbon_g"] == pytest.approx(view2["totals"]["carbon_g"])
    finally:
        board.close()


def test_a_bare_run_and_unknown_names(known: Known) -> None:
    board = Board(known.path)
    try:
        _, view = board.view(Scope.of_run(known.run_ids[0]))
        assert view["kind"] == "run" and view["site"] == "KR"
        assert view["totals"]["windows"] == 6
        with pytest.raises(ConfigError, match="no job 'nope'"):
            board.view(Scope.of_job("nope"))
        with pytest.raises(ConfigError, match="no run"):
            board.view(Scope.of_run("nope"))
    finally:
        board.close()


def test_series_are_thinned_but_keep_both_ends() -> None:
    index = thin(100_000, 2000)
    assert len(index) <= 2000 and index[0] == 0 and index[-1] == 99_999
    assert list(thin(5, 2000)) == [0, 1, 2, 3, 4]


def test_a_job_with_no_window_yet_and_an_old_ledger(known: Known, tmp_path: Path) -> None:
    with Ledger(known.path) as ledger:
        JobBook(ledger).create("fresh", site="FR", store_url="x", executor="local", spec=SPEC)
    board = Board(known.path)
    try:
        _, view = board.view(Scope.of_job("fresh"))
        assert (view["status"], view["site"], view["state"]) == ("pending", "FR", None)
        assert view["totals"]["windows"] == 0 and view["totals"]["agnostic_g"] is None
        assert view["series"]["t"] == [] and view["outlook"] == []
        json.dumps(view, allow_nan=False)  # what the page receives: strict JSON
        assert [j["name"] for j in board.jobs()] == ["fresh", "known"]
    finally:
        board.close()
    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    for statement in _V1.split(";"):
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="schema 1, older"):
        Board(old)


def test_a_paused_job_shows_its_pause_while_it_happens(tmp_path: Path) -> None:
    nap = build_nap(tmp_path, resumed=False)
    board = Board(nap.path)
    try:
        _, view = board.view(Scope.of_job("nap"))
        assert view["status"] == "paused" and view["controller_state"] == "done"
        assert view["state"] == "paused"  # not the ended run's "done"
        assert view["pause_until_text"] == "2026-06-15 18:00 UTC"
        # the pause band is open now: from the run's end to the planned resume
        (band,) = view["pause_marks"]
        assert band == {
            "start": (NAP_START + timedelta(hours=2)).timestamp(),
            "end": RESUME.timestamp(),
            "open": True,
        }
        # the GPU card agrees with the event log: the optimiser settled at 1740 after the
        # last window measured the 1875 MHz probe
        assert view["series"]["setting"][-1] == 1875.0
        assert view["gpu"]["setting"] == view["events"][0]["setting"] == 1740.0
        with Ledger(nap.path) as ledger:
            JobBook(ledger).update("nap", status=JobStatus.MOVING, site="BB")
        _, moving = board.view(Scope.of_job("nap"))
        assert moving["state"] == "moving" and moving["pause_marks"] == []
        (move,) = moving["move_marks"]
        assert (move["from"], move["to"], move["arrived"], move["open"]) == ("AA", "BB", None, True)
    finally:
        board.close()


def test_no_line_joins_windows_across_a_pause(tmp_path: Path) -> None:
    nap = build_nap(tmp_path, resumed=True)
    board = Board(nap.path)
    try:
        _, view = board.view(Scope.of_job("nap"))
        series = view["series"]
        assert series["intensity"] == [DIRTY] * 4 + [None] + [CLEAN] * 4
        gap = series["t"][4]
        assert series["t"][3] < gap < series["t"][5]
        assert all(series[k][4] is None for k in series if k != "t")
        assert [m["open"] for m in view["pause_marks"]] == [False]
    finally:
        board.close()
    # thinned, a gap's edges are kept and still break the line
    index = gapped_index(10_000, [i == 5_000 for i in range(10_000)], 50)
    assert None in index and index[index.index(None) - 1] == 4_999
    assert index[index.index(None) + 1] == 5_000 and len(index) <= 54


def test_the_estimate_credits_the_pause_it_says_it_credits(tmp_path: Path) -> None:
    """Paused at 522, resumed at 265 g/kWh: the carbon-agnostic run would have run on at 522."""
    nap = build_nap(tmp_path, resumed=True)
    board = Board(nap.path)
    try:
        _, view = board.view(Scope.of_job("nap"))
        totals = view["totals"]
        kwh = NAP_ENERGY_J / 3.6e6
        assert totals["carbon_g"] == pytest.approx(4 * kwh * DIRTY + 4 * kwh * CLEAN)
        assert totals["agnostic_g"] == pytest.approx(8 * kwh * DIRTY)
        saving = 1 - totals["carbon_g"] / totals["agnostic_g"]
        assert saving == pytest.approx(1 - (DIRTY + CLEAN) / (2 * DIRTY))  # 24.6 %, not -0.2 %
        assert "without its pauses and moves" in totals["agnostic_method"]
    finally:
        board.close()


def test_a_view_keeps_its_mark_while_another_job_writes(tmp_path: Path) -> None:
    nap = build_nap(tmp_path, resumed=True)
    board = Board(nap.path)
    try:
        mark, view = board.view(Scope.of_job("nap"))
        for k in range(3):
            write_other(nap, k)
            again, same = board.view(Scope.of_job("nap"))
            assert again == mark and same is view
        with Ledger(nap.path) as ledger:
            JobBook(ledger).update("nap", message="a new word")
        assert board.view(Scope.of_job("nap"))[0] != mark
    finally:
        board.close()
