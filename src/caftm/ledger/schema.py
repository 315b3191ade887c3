"""The ledger's tables, its schema version (``PRAGMA user_version``) and forward migrations.

=======  ===================================================================================
version  what it added
=======  ===================================================================================
0 / 1    ``runs``, ``windows``, ``events`` (ledgers written before versioning read as 0)
2        ``jobs``, ``legs``, ``transfers``; ``runs`` gains ``job``, ``leg``, ``pid``, ``host``
3        ``plans``: the planner's current plan, one row per new plan (``plan_json`` carries its
         own format version, ``v``; see :func:`caftm.control.planner.plan_record`)
=======  ===================================================================================

A ledger is migrated when opened for writing; a ledger of a newer version is refused.
"""

from __future__ import annotations

import sqlite3

__all__ = ["SCHEMA_VERSION", "migrate"]

SCHEMA_VERSION = 3

_V1 = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, name TEXT NOT NULL, policy TEXT NOT NULL, site TEXT NOT NULL,
    started_at TEXT NOT NULL, ended_at TEXT, status TEXT NOT NULL, simulated INTEGER NOT NULL,
    config_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS windows (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id), time TEXT NOT NULL,
    duration_s REAL NOT NULL, steps INTEGER NOT NULL, setting REAL, knob TEXT, energy_j REAL,
    intensity_g_per_kwh REAL, carbon_g REAL, site TEXT NOT NULL, phase TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id), time TEXT NOT NULL,
    from_state TEXT NOT NULL, to_state TEXT NOT NULL, reason TEXT NOT NULL,
    intensity_g_per_kwh REAL, site TEXT NOT NULL, gpu_setting REAL
);
CREATE INDEX IF NOT EXISTS windows_run ON windows(run_id, time);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, time);
"""

_V2_TABLES = """
CREATE TABLE IF NOT EXISTS jobs (
    name TEXT PRIMARY KEY, status TEXT NOT NULL, site TEXT NOT NULL, leg INTEGER NOT NULL,
    step INTEGER NOT NULL DEFAULT 0, store_url TEXT NOT NULL, executor TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, ended_at TEXT,
    moves INTEGER NOT NULL DEFAULT 0, pauses INTEGER NOT NULL DEFAULT 0,
    preemptions INTEGER NOT NULL DEFAULT 0, crashes INTEGER NOT NULL DEFAULT 0,
    pause_until TEXT, supervisor_pid INTEGER, supervisor_host TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0, message TEXT NOT NULL DEFAULT '',
    spec_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS legs (
    id INTEGER PRIMARY KEY, job TEXT NOT NULL REFERENCES jobs(name), leg INTEGER NOT NULL,
    site TEXT NOT NULL, status TEXT NOT NULL, started_at TEXT NOT NULL, ended_at TEXT,
    executor TEXT NOT NULL, external_id TEXT, node TEXT, pid INTEGER, host TEXT,
    exit_code INTEGER, start_step INTEGER, end_step INTEGER, message TEXT NOT NULL DEFAULT '',
    UNIQUE (job, leg)
);
CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY, job TEXT NOT NULL, leg INTEGER NOT NULL, time TEXT NOT NULL,
    src_site TEXT NOT NULL, dst_site TEXT NOT NULL, src_url TEXT NOT NULL,
    dst_url TEXT NOT NULL, step INTEGER, bytes INTEGER, seconds REAL, status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS legs_job ON legs(job, leg);
CREATE INDEX IF NOT EXISTS transfers_job ON transfers(job, id);
"""

_V3_TABLES = """
CREATE TABLE IF NOT EXISTS plans (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id), time TEXT NOT NULL,
    plan_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS plans_run ON plans(run_id, id);
"""

_RUN_COLUMNS_V2 = (("job", "TEXT"), ("leg", "INTEGER"), ("pid", "INTEGER"), ("host", "TEXT"))


def version(db: sqlite3.Connection) -> int:
    """The file's schema version (0: written before versioning, or empty)."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: sqlite3.Connection) -> int:
    """Create or bring the schema up to :data:`SCHEMA_VERSION`; returns the version found.

    Raises:
        sqlite3.Error: sqlite failed; ValueError: the file is of a newer version.
    """
    found = version(db)
    if found > SCHEMA_VERSION:
        raise ValueError(
            f"written by a newer caftm (schema {found}; this one knows {SCHEMA_VERSION})"
        )
    if found == SCHEMA_VERSION:
        return found
    _run_script(db, _V1)
    columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    for name, kind in _RUN_COLUMNS_V2:
        if name not in columns:
            db.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
    _run_script(db, _V2_TABLES)
    db.execute("CREATE INDEX IF NOT EXISTS runs_job ON runs(job, leg)")
    _run_script(db, _V3_TABLES)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return found


def _run_script(db: sqlite3.Connection, script: str) -> None:
    """Run each statement of ``script`` inside the caller's transaction (``executescript``
    would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            db.execute(statement)
