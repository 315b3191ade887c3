"""``caftm runs`` and ``caftm events RUN`` over a real ledger file."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer

from caftm.cli import runs
from caftm.cli._common import console, run_app
from caftm.ledger import Ledger
from caftm.records import Event, State

T0 = datetime(2026, 11, 26, 12, tzinfo=UTC)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    monkeypatch.setattr(console, "width", 200)  # wide enough that no cell is cut
    app = typer.Typer(add_completion=False)
    runs.register(app)
    return app


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        run_id = ledger.start_run(
            name="resnet",
            policy="caftm",
            site="KR",
            started_at=T0,
            run_id="feedbeef0001",
            simulated=True,
        )
        ledger.record_window(
            run_id,
            time=T0,
            duration_s=60,
            steps=250,
            setting=1410.0,
            knob="clock",
            energy_j=7.2e6,
            intensity_g_per_kwh=500.0,
            site="KR",
            phase="tolerance",
        )
        ledger.record_event(
            run_id,
            Event(
                T0 + timedelta(minutes=5),
                State.TOLERANCE,
                State.SUSPEND,
                "intensity 512 ≥ θ 400 g/kWh",
                512.0,
                "KR",
                1410.0,
            ),
        )
        ledger.end_run(run_id, ended_at=T0 + timedelta(hours=2))
    return path


def test_runs_lists_totals(
    app: typer.Typer, ledger_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_app(app, ["runs", "--db", str(ledger_path)]) == 0
    out = capsys.readouterr().out
    assert "feedbeef0001" in out and "resnet" in out and "caftm" in out
    assert "2.0000" in out  # 7.2 MJ = 2 kWh
    assert "1000.0" in out  # 2 kWh × 500 g/kWh
    assert "simulated" in out


def test_events_by_prefix(
    app: typer.Typer, ledger_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_app(app, ["events", "feed", "--db", str(ledger_path)]) == 0
    out = capsys.readouterr().out
    assert "tolerance" in out and "suspend" in out and "512" in out and "1410" in out


def test_ledger_from_environment(
    app: typer.Typer,
    ledger_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CAFTM_LEDGER", str(ledger_path))
    assert run_app(app, ["runs"]) == 0
    assert "feedbeef0001" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(
    app: typer.Typer, ledger_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_app(app, ["runs", "--db", str(tmp_path / "none.sqlite")]) == 2
    err = capsys.readouterr().err
    assert "no ledger at" in err and "Traceback" not in err
    assert run_app(app, ["events", "nope", "--db", str(ledger_path)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err


def test_registered_on_the_caftm_command(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from caftm.cli import app as caftm_app

    monkeypatch.setattr(console, "width", 200)
    assert run_app(caftm_app, ["events", "feedbeef0001", "--db", str(ledger_path)]) == 0
    assert "intensity 512 ≥ θ 400 g/kWh" in capsys.readouterr().out


def test_a_directory_or_foreign_sqlite_as_db_is_one_error_line(
    app: typer.Typer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    assert run_app(app, ["runs", "--db", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "Traceback" not in err
    foreign = tmp_path / "app.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE runs (x INTEGER)")
    db.close()
    assert run_app(app, ["events", "abc", "--db", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "is not a caftm ledger" in err
    with sqlite3.connect(foreign) as db:  # left as it was: no ledger tables added
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert tables == {"runs"}


def test_events_prefix_is_case_sensitive(
    app: typer.Typer, ledger_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_app(app, ["events", "FEED", "--db", str(ledger_path)]) == 2
    assert "no run 'FEED'" in capsys.readouterr().err
