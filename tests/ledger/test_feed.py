"""The read-only incremental feed: rows after an id, scopes, and no writes ever."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from tests.dashboard.known import append_window, build_known

from caftm.errors import ConfigError, LedgerError
from caftm.ledger import JobBook, Ledger, TransferStatus
from caftm.ledger.feed import Feed, Scope
from caftm.records import RunStatus, State
from caftm.report.timeline import job_path


def _digest(path: Path) -> str:
    """The database file and its write-ahead log (the shared-memory index is readers' too)."""
    wal = path.with_name(path.name + "-wal")
    data = path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    return hashlib.sha256(data).hexdigest()


def test_windows_and_events_after_an_id(tmp_path: Path) -> None:
    known = build_known(tmp_path / "l.sqlite")
    with Ledger(known.path, read_only=True) as ledger:
        feed = Feed(ledger)
        windows = feed.windows(Scope.of_job("known"))
        events = feed.events(Scope.of_job("known"))
        assert len(windows) == 13
        assert [w.site for w in windows] == ["KR"] * 6 + ["FR"] * 7
        assert [w.id for w in windows] == sorted(w.id for w in windows)
        assert feed.windows(Scope.of_job("known"), after_id=windows[-1].id) == []
        assert feed.windows(Scope.of_job("known"), after_id=windows[5].id) == windows[6:]
        assert feed.windows(Scope.of_job("known"), limit=2) == windows[:2]
        assert feed.windows(Scope.of_run(known.run_ids[0])) == windows[:6]
        assert events[0].to_state == "scaling" and events[-1].run_id == known.run_ids[2]
        before = feed.high_water()
        append_window(known.path, known.run_ids[2], known.next_time + timedelta(minutes=10))
        new = feed.windows(Scope.of_job("known"), after_id=windows[-1].id)
        assert [(w.site, w.setting, w.intensity_g_per_kwh) for w in new] == [("FR", 1815.0, 35.0)]
        assert len(feed.events(Scope.of_job("known"), after_id=events[-1].id)) == 1
        after = feed.high_water()
        assert after[0] == new[0].id > before[0] and after[1] > before[1]
        assert feed.simulated(Scope.of_job("known"))
        assert feed.run_ids(Scope.of_job("known")) == known.run_ids
        assert feed.windows(Scope.of_job("nobody")) == []


def test_the_public_queries_of_a_job_and_its_runs(tmp_path: Path) -> None:
    known = build_known(tmp_path / "l.sqlite")
    with Ledger(known.path) as ledger:
        bare = ledger.start_run(
            name="bare", policy="caftm", site="DE", started_at=known.next_time, config={"a": 1}
        )
    with Ledger(known.path, read_only=True) as ledger:
        feed, book = Feed(ledger), JobBook(ledger)
        first, second, third = known.run_ids
        spans = feed.run_spans(Scope.of_job("known"))
        assert [(s.run_id, s.site, s.leg, s.end_reason) for s in spans] == [
            (first, "KR", 1, "run ended: moved"),
            (second, "FR", 2, "run ended: paused: cleaner later"),
            (third, "FR", 3, None),
        ]
        events = feed.events(Scope.of_job("known"))
        assert spans[1].first_event == min(e.time for e in events if e.run_id == second)
        assert spans[1].last_event == max(e.time for e in events if e.run_id == second)
        assert events[-1].to_state is State.TOLERANCE  # states come back typed
        assert feed.run_spans(Scope.of_run(bare)) == []  # no events yet
        moves, pauses = job_path(book, "known")
        assert [(m[2], m[3]) for m in moves] == [("KR", "FR")] and len(pauses) == 1
        assert moves[0][:2] == (spans[0].last_event, spans[1].first_event)

        run = ledger.run(first)
        assert run is not None and (run.job, run.leg, run.status) == ("known", 1, "moved")
        assert run.status is RunStatus.MOVED and run.windows == 6 and run.simulated
        alone = ledger.run(bare)
        assert alone is not None and alone.job is None and alone.config == {"a": 1}
        assert alone.status is RunStatus.RUNNING and alone.energy_j is None
        assert ledger.run("nope") is None
        assert [r.run_id for r in ledger.runs(outside_jobs=True)] == [bare]
        assert {r.run_id for r in ledger.runs()} == {bare, *known.run_ids}

        windows = feed.windows(Scope.of_job("known"))
        totals = book.totals("known")
        assert totals.steps == sum(w.steps for w in windows) == 650
        assert totals.energy_j == pytest.approx(sum(w.energy_j or 0.0 for w in windows))
        assert totals.carbon_g == pytest.approx(sum(w.carbon_g or 0.0 for w in windows))
        assert book.totals("nobody").energy_j is None and book.totals("nobody").steps == 0
        (transfer,) = book.transfers("known")
        assert transfer.status is TransferStatus.DONE and transfer.status == "done"


def test_the_feed_never_writes_and_never_blocks_a_writer(tmp_path: Path) -> None:
    known = build_known(tmp_path / "l.sqlite")
    before = _digest(known.path)
    with Ledger(known.path, read_only=True) as ledger:
        feed = Feed(ledger)
        feed.windows(Scope.of_job("known"))
        feed.events(Scope.of_job("known"))
        feed.high_water()
        feed.run_spans(Scope.of_job("known"))
        ledger.runs()
        ledger.run(known.run_ids[0])
        JobBook(ledger).totals("known")
    assert _digest(known.path) == before
    with Ledger(known.path, read_only=True) as ledger:
        feed = Feed(ledger)
        assert len(feed.windows(Scope.of_job("known"))) == 13
        # a writer appends while the viewer holds its connection open
        append_window(known.path, known.run_ids[2], known.next_time + timedelta(minutes=10))
        assert len(feed.windows(Scope.of_job("known"))) == 14
        with pytest.raises(LedgerError, match="read-only"):
            ledger.end_run(known.run_ids[2], ended_at=known.next_time)
    assert _digest(known.path) != before  # the writer's rows, nothing of the viewer's


def test_a_scope_names_one_thing_and_a_missing_ledger_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Scope()
    with pytest.raises(ValueError, match="exactly one"):
        Scope(job="a", run_id="b")
    with pytest.raises(ConfigError, match="no ledger"):
        Ledger(tmp_path / "absent.sqlite", read_only=True)
    assert not (tmp_path / "absent.sqlite").exists()
    foreign = tmp_path / "app.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE things (x INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match="not a caftm ledger"):
        Ledger(foreign, read_only=True)


def test_the_viewers_never_import_rich_or_typer() -> None:
    code = (
        "import sys, caftm.ledger.feed, caftm.report.build, caftm.report.html; "
        "import importlib.util as u; "
        "u.find_spec('starlette') and __import__('caftm.dashboard.app'); "
        "print(','.join(m for m in ('rich', 'typer') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
