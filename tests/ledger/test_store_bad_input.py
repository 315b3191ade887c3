"""Ledger paths that are not ledgers, and run-id prefixes that differ only in case."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from caftm.errors import ConfigError
from caftm.ledger import Ledger

T0 = datetime(2026, 11, 26, 12, tzinfo=UTC)


def test_a_directory_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"ledger {tmp_path} is a directory"):
        Ledger(tmp_path)


def test_a_foreign_sqlite_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "app.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER, name TEXT)")
        db.execute("INSERT INTO users VALUES (1, 'ada')")
    db.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(ConfigError, match=r"app\.sqlite is not a caftm ledger.*users"):
        Ledger(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.sqlite"]


def test_an_empty_file_and_a_caftm_ledger_still_open(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    with Ledger(empty) as ledger:
        ledger.start_run(name="a", policy="p", site="KR", started_at=T0, run_id="r1")
    with Ledger(empty) as ledger:
        assert [r.run_id for r in ledger.runs()] == ["r1"]


def test_run_id_prefixes_are_case_sensitive(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.sqlite") as ledger:
        for run_id in ("Abc_1", "abc%2", "x9"):
            ledger.start_run(name="n", policy="p", site="KR", started_at=T0, run_id=run_id)
        assert ledger.resolve_run("Abc") == "Abc_1"
        assert ledger.resolve_run("abc") == "abc%2"
        with pytest.raises(ConfigError, match=r"no run 'X'"):
            ledger.resolve_run("X")
        with pytest.raises(ConfigError, match=r"no run 'abc_'"):
            ledger.resolve_run("abc_")
