"""The ledger's schema version: a ledger written before versioning is migrated, a newer one is
refused, a read-only open never writes; jobs, legs and transfers; dead runs are reaped."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from caftm.errors import ConfigError, LedgerError
from caftm.ledger import JobBook, JobStatus, Ledger, LegStatus, TransferRecord, TransferStatus
from caftm.ledger.feed import Feed, Scope
from caftm.ledger.schema import SCHEMA_VERSION

# the schema as caftm 0.1 (before versioning) wrote it
_V1 = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, name TEXT NOT NULL, policy TEXT NOT NULL, site TEXT NOT NULL,
    started_at TEXT NOT NULL, ended_at TEXT, status TEXT NOT NULL, simulated INTEGER NOT NULL,
    config_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE windows (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id), time TEXT NOT NULL,
    duration_s REAL NOT NULL, steps INTEGER NOT NULL, setting REAL, knob TEXT, energy_j REAL,
    intensity_g_per_kwh REAL, carbon_g REAL, site TEXT NOT NULL, phase TEXT NOT NULL
);
CREATE TABLE events (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id), time TEXT NOT NULL,
    from_state TEXT NOT NULL, to_state TEXT NOT NULL, reason TEXT NOT NULL,
    intensity_g_per_kwh REAL, site TEXT NOT NULL, gpu_setting REAL
);
INSERT INTO runs VALUES ('old1', 'old', 'caftm', 'KR', '2026-11-01T00:00:00+00:00',
    '2026-11-01T01:00:00+00:00', 'finished', 1, '{}');
INSERT INTO windows (run_id, time, duration_s, steps, setting, knob, energy_j,
    intensity_g_per_kwh, carbon_g, site, phase)
    VALUES ('old1', '2026-11-01T00:30:00+00:00', 10, 20, 1500, 'clock', 3600000, 400, 400, 'KR',
    'tolerance');
"""


def test_a_ledger_from_before_versioning_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.executescript(_V1)
    with Ledger(path) as ledger:
        (run,) = ledger.runs()
        assert run.run_id == "old1" and run.carbon_g == pytest.approx(400)
        new = ledger.start_run(
            name="n", policy="caftm", site="FR", started_at=datetime.now(UTC), job="j", leg=1
        )
        assert new in {r.run_id for r in ledger.runs()}
        book = JobBook(ledger)
        book.create("j", site="FR", store_url="/s", executor="local", spec={})
        assert Feed(ledger).run_ids(Scope.of_job("j")) == [new]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    assert {"job", "leg", "pid", "host"} <= columns


def test_a_newer_ledger_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite"
    with Ledger(path):
        pass
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    for read_only in (False, True):
        with pytest.raises(ConfigError, match="newer caftm"):
            Ledger(path, read_only=read_only)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_read_only_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with pytest.raises(ConfigError, match="no ledger at"):
        Ledger(path, read_only=True)
    with Ledger(path) as writer:
        writer.start_run(name="a", policy="caftm", site="KR", started_at=datetime.now(UTC))
    before = path.stat().st_mtime_ns
    with Ledger(path, read_only=True) as reader:
        assert len(reader.runs()) == 1
        with pytest.raises(LedgerError, match="read-only"):
            reader.start_run(name="b", policy="caftm", site="KR", started_at=datetime.now(UTC))
    assert path.stat().st_mtime_ns == before


def test_jobs_legs_and_transfers(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        book = JobBook(ledger)
        job = book.create("j", site="KR", store_url="/kr", executor="local", spec={"a": 1})
        assert job.status is JobStatus.PENDING and job.spec == {"a": 1}
        with pytest.raises(ConfigError, match="exists already"):
            book.create("j", site="KR", store_url="/kr", executor="local", spec={})
        with pytest.raises(ConfigError, match="cannot update job fields"):
            book.update("j", created_at="2020-01-01")
        book.start_leg("j", 1, site="KR", executor="local", start_step=0)
        run = ledger.start_run(
            name="j", policy="caftm", site="KR", started_at=datetime.now(UTC), job="j", leg=1
        )
        book.end_leg("j", 1, LegStatus.CRASHED, exit_code=-9)
        assert {r.run_id: r.status for r in ledger.runs()}[run] == "interrupted"
        assert book.count("j", "crashes").crashes == 1
        transfer = book.record_transfer(
            TransferRecord(
                "j",
                1,
                datetime.now(UTC),
                "KR",
                "FR",
                "/kr",
                "/fr",
                10,
                None,
                None,
                TransferStatus.STARTED,
                "",
            )
        )
        book.finish_transfer(transfer, status=TransferStatus.DONE, size_bytes=123, seconds=0.5)
        (record,) = book.transfers("j")
        assert (record.status, record.bytes, record.seconds) == ("done", 123, 0.5)
        with pytest.raises(ConfigError, match="no job 'x'"):
            book.get("x")


def test_runs_of_dead_processes_are_marked_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    code = (
        "import os, sys; from datetime import datetime, UTC; from caftm.ledger import Ledger;"
        f"Ledger({str(path)!r}).start_run(name='k', policy='caftm', site='KR',"
        " started_at=datetime.now(UTC)); os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    with Ledger(path) as ledger:
        alive = ledger.start_run(name="me", policy="caftm", site="KR", started_at=datetime.now(UTC))
        assert ledger.reap_dead_runs() == 1
        status = {r.name: r.status for r in ledger.runs()}
        assert status == {"k": "interrupted", "me": "running"}
        assert alive
