"""The sqlite ledger: runs, windows, events, totals, WAL, id prefixes and concurrent writers."""

from __future__ import annotations

import math
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from caftm.errors import ConfigError, LedgerError
from caftm.ledger import Ledger, default_ledger_path
from caftm.records import Event, State

T0 = datetime(2026, 11, 26, 12, tzinfo=UTC)


def _event(minutes: int, to_state: State, reason: str) -> Event:
    return Event(
        T0 + timedelta(minutes=minutes), State.TOLERANCE, to_state, reason, 512.5, "KR", 1410.0
    )


def test_records_and_reads_back_a_run(tmp_path: Path) -> None:
    with Ledger(tmp_path / "sub" / "ledger.sqlite") as ledger:
        run_id = ledger.start_run(
            name="cnn", policy="caftm", site="KR", started_at=T0, config={"threshold": 400}
        )
        ledger.record_event(run_id, _event(1, State.SUSPEND, "intensity 512 ≥ θ 400 g/kWh"))
        ledger.record_event(run_id, _event(2, State.MIGRATION, "checkpoint complete"))
        ledger.record_window(
            run_id,
            time=T0,
            duration_s=60.0,
            steps=300,
            setting=1410.0,
            knob="clock",
            energy_j=36_000.0,
            intensity_g_per_kwh=500.0,
            site="KR",
            phase="tolerance",
        )
        ledger.record_window(
            run_id,
            time=T0 + timedelta(minutes=1),
            duration_s=30.0,
            steps=100,
            setting=None,
            knob="clock",
            energy_j=None,
            intensity_g_per_kwh=math.nan,
            site="FR",
            phase="scaling",
        )
        ledger.end_run(run_id, ended_at=T0 + timedelta(hours=1))
        (run,) = ledger.runs()
        assert (run.run_id, run.name, run.policy, run.site, run.status) == (
            run_id,
            "cnn",
            "caftm",
            "KR",
            "finished",
        )
        assert run.started_at == T0 and run.ended_at == T0 + timedelta(hours=1)
        assert (run.windows, run.events, run.steps) == (2, 2, 400)
        assert run.energy_j == 36_000.0
        assert run.carbon_g == pytest.approx(36_000.0 / 3.6e6 * 500.0)  # 5 g
        events = ledger.events(run_id)
        assert [e.to_state for e in events] == [State.SUSPEND, State.MIGRATION]
        stored, recorded = events[0], _event(1, State.SUSPEND, "intensity 512 ≥ θ 400 g/kWh")
        assert (stored.run_id, stored.time, stored.from_state, stored.to_state, stored.reason,
                stored.intensity_g_per_kwh, stored.site, stored.gpu_setting) == (
            run_id, recorded.time, recorded.from_state, recorded.to_state, recorded.reason,
            recorded.intensity_g_per_kwh, recorded.site, recorded.gpu_setting,
        )  # fmt: skip
        assert events[0].id < events[1].id
        windows = ledger.windows(run_id)
        assert [w.run_id for w in windows] == [run_id] * 2 and windows[0].id < windows[1].id
        assert windows[0].carbon_g == pytest.approx(5.0)
        assert windows[1].energy_j is None and windows[1].carbon_g is None
        assert windows[1].intensity_g_per_kwh is None  # NaN is stored as unknown
    mode = sqlite3.connect(tmp_path / "sub" / "ledger.sqlite").execute("PRAGMA journal_mode")
    assert mode.fetchone()[0] == "wal"


def test_runs_newest_first_and_id_prefixes(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        first = ledger.start_run(name="a", policy="p", site="s", started_at=T0, run_id="abc111")
        second = ledger.start_run(
            name="b",
            policy="p",
            site="s",
            started_at=T0 + timedelta(1),
            run_id="abd222",
            simulated=True,
        )
        assert [r.run_id for r in ledger.runs()] == [second, first]
        assert ledger.runs()[0].simulated and ledger.runs()[0].status == "running"
        assert ledger.resolve_run("abc") == first
        assert ledger.resolve_run("abd222") == second
        with pytest.raises(ConfigError, match="ambiguous"):
            ledger.resolve_run("ab")
        with pytest.raises(ConfigError, match="no run 'zz'"):
            ledger.resolve_run("zz")
        with pytest.raises(ConfigError, match="no run"):
            ledger.resolve_run("%")  # LIKE wildcards are matched literally


def test_threads_write_concurrently(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        run_id = ledger.start_run(name="t", policy="p", site="s", started_at=T0)

        def write(offset: int) -> None:
            for i in range(50):
                ledger.record_event(run_id, _event(offset + i, State.SCALING, f"e{offset + i}"))

        threads = [threading.Thread(target=write, args=(k * 100,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(ledger.events(run_id)) == 200


def test_threads_read_while_others_write(tmp_path: Path) -> None:
    """Reads share the connection's lock with writes: no errors, and every read is whole."""
    writers, per_writer = 3, 60
    with Ledger(tmp_path / "l.sqlite") as ledger:
        run_ids = [
            ledger.start_run(name=f"w{k}", policy="p", site="s", started_at=T0)
            for k in range(writers)
        ]
        errors: list[BaseException] = []
        done = threading.Event()

        def write(run_id: str) -> None:
            try:
                for i in range(per_writer):
                    ledger.record_event(run_id, _event(i, State.SCALING, f"e{i}"))
                    ledger.record_window(
                        run_id,
                        time=T0 + timedelta(seconds=i),
                        duration_s=1.0,
                        steps=1,
                        setting=None,
                        knob="clock",
                        energy_j=10.0,
                        intensity_g_per_kwh=100.0,
                        site="s",
                        phase="scaling",
                    )
            except BaseException as e:
                errors.append(e)

        def read() -> None:
            try:
                while not done.is_set():
                    for run in ledger.runs():
                        assert run.windows == run.steps <= per_writer  # one step per window
                    for run_id in run_ids:
                        windows = ledger.windows(run_id)
                        assert [w.time for w in windows] == [
                            T0 + timedelta(seconds=i) for i in range(len(windows))
                        ]
                        events = ledger.events(run_id)
                        assert [e.reason for e in events] == [f"e{i}" for i in range(len(events))]
                    ledger.resolve_run(run_ids[0])
            except BaseException as e:
                errors.append(e)

        readers = [threading.Thread(target=read) for _ in range(3)]
        writing = [threading.Thread(target=write, args=(run_id,)) for run_id in run_ids]
        for t in readers + writing:
            t.start()
        for t in writing:
            t.join()
        done.set()
        for t in readers:
            t.join()
        assert errors == []
        runs = ledger.runs()
        assert sorted(r.windows for r in runs) == [per_writer] * writers
        assert all(len(ledger.events(run_id)) == per_writer for run_id in run_ids)


class _LockWatchingConnection:
    """The ledger's real connection, noting every statement run without the ledger's lock."""

    def __init__(self, inner: sqlite3.Connection, lock: threading.Lock) -> None:
        self.inner, self.lock = inner, lock
        self.unlocked: list[str] = []

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> sqlite3.Cursor:
        if not self.lock.locked():  # one thread here: locked means this thread holds it
            self.unlocked.append(sql.split()[0])
        return self.inner.execute(sql, params)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def test_reads_take_the_connections_lock(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        watcher = _LockWatchingConnection(ledger._db, ledger._lock)
        ledger._db = watcher  # type: ignore[assignment]
        run_id = ledger.start_run(name="t", policy="p", site="s", started_at=T0)
        ledger.record_event(run_id, _event(1, State.SUSPEND, "high"))
        assert [r.run_id for r in ledger.runs()] == [run_id]
        assert ledger.resolve_run(run_id[:4]) == run_id
        assert len(ledger.events(run_id)) == 1 and ledger.windows(run_id) == []
        assert watcher.unlocked == []


def test_default_path_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CAFTM_LEDGER", str(tmp_path / "x.sqlite"))
    assert default_ledger_path() == tmp_path / "x.sqlite"
    monkeypatch.delenv("CAFTM_LEDGER")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_ledger_path() == tmp_path / "data" / "caftm" / "ledger.sqlite"


def test_unopenable_file_is_a_config_error(tmp_path: Path) -> None:
    not_a_db = tmp_path / "junk.sqlite"
    not_a_db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="cannot open ledger"):
        Ledger(not_a_db)


def test_a_damaged_ledger_is_one_clear_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as ledger:
        run_id = ledger.start_run(name="cnn", policy="caftm", site="KR", started_at=T0)
        with sqlite3.connect(path) as other:  # another process damages it
            other.execute("DROP TABLE events")
        with pytest.raises(LedgerError, match=rf"cannot write ledger {path}.*events"):
            ledger.record_event(run_id, _event(1, State.SUSPEND, "dirty"))
        with sqlite3.connect(path) as other:
            other.execute("DROP TABLE windows")
        with pytest.raises(LedgerError, match=rf"cannot read ledger {path}"):
            ledger.runs()
