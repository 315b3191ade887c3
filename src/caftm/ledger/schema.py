"""The ledger's tables, its schema version and forward migrations, once for every backend.

=======  ===================================================================================
version  what it added
=======  ===================================================================================
0 / 1    ``runs``, ``windows``, ``events`` (sqlite ledgers written before versioning read as 0)
2        ``jobs``, ``legs``, ``transfers``; ``runs`` gains ``job``, ``leg``, ``pid``, ``host``
3        ``jobs`` gains its supervisor's lease: ``lease_owner``, ``lease_expires_s``
4        ``windows`` and ``events`` gain ``spool_key`` (unique: a spooled record is imported
         once, :mod:`caftm.ledger.spool`)
5        ``plans``: the planner's current plan, one row per new plan (``plan_json`` carries its
         own format version, ``v``; see :func:`caftm.control.planner.plan_record`; ``spool_key``
         as in 4)
=======  ===================================================================================

The SQL is sqlite's; each backend spells its types (:meth:`~caftm.ledger.backend.Backend.ddl`)
and keeps the version (sqlite: ``PRAGMA user_version``; PostgreSQL: a ``caftm_schema`` table).
A ledger is migrated when opened for writing, in one transaction no other process interleaves
with; a ledger of a newer version is refused. A new version is one more :class:`Migration`
at the end of :data:`MIGRATIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from caftm.ledger.backend import Backend, Session

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "Migration", "is_foreign", "migrate"]

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

_V5_PLANS = """
CREATE TABLE IF NOT EXISTS plans (
    id INTEGER PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id), time TEXT NOT NULL,
    plan_json TEXT NOT NULL, spool_key TEXT
);
CREATE INDEX IF NOT EXISTS plans_run ON plans(run_id, id);
CREATE UNIQUE INDEX IF NOT EXISTS plans_spool ON plans(spool_key);
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema version: columns added to existing tables (skipped where present), then a
    script of ``CREATE … IF NOT EXISTS`` statements."""

    version: int
    add_columns: tuple[tuple[str, str, str], ...] = ()  # (table, column, type)
    script: str = ""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, script=_V1),
    Migration(
        2,
        add_columns=(
            ("runs", "job", "TEXT"),
            ("runs", "leg", "INTEGER"),
            ("runs", "pid", "INTEGER"),
            ("runs", "host", "TEXT"),
        ),
        script=_V2_TABLES + ";CREATE INDEX IF NOT EXISTS runs_job ON runs(job, leg)",
    ),
    Migration(
        3, add_columns=(("jobs", "lease_owner", "TEXT"), ("jobs", "lease_expires_s", "REAL"))
    ),
    Migration(
        4,
        add_columns=(("windows", "spool_key", "TEXT"), ("events", "spool_key", "TEXT")),
        script="CREATE UNIQUE INDEX IF NOT EXISTS windows_spool ON windows(spool_key);"
        "CREATE UNIQUE INDEX IF NOT EXISTS events_spool ON events(spool_key)",
    ),
    Migration(5, script=_V5_PLANS),
)

SCHEMA_VERSION = MIGRATIONS[-1].version
"""The version this caftm writes."""

_LEDGER_RUN_COLUMNS = {"run_id", "started_at", "status", "simulated"}


def is_foreign(backend: Backend, session: Session) -> str | None:
    """The database's tables (a few, named) when it holds tables but no caftm ledger; else None."""
    tables = backend.tables(session)
    if not tables or backend.columns(session, "runs") >= _LEDGER_RUN_COLUMNS:
        return None
    return ", ".join(sorted(tables)[:5])


def migrate(backend: Backend, session: Session) -> int:
    """Create or bring the schema up to :data:`SCHEMA_VERSION` inside ``session`` (a
    transaction of ``backend``); returns the version found.

    Raises:
        BackendError: the database failed; ValueError: the ledger is of a newer version.
    """
    found = backend.schema_version(session)
    if found > SCHEMA_VERSION:
        raise ValueError(
            f"written by a newer caftm (schema {found}; this one knows {SCHEMA_VERSION})"
        )
    for step in MIGRATIONS:
        if step.version <= found:
            continue
        for table, column, kind in step.add_columns:
            if column not in backend.columns(session, table):
                session.execute(backend.ddl(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
        for statement in backend.ddl(step.script).split(";"):
            if statement.strip():
                session.execute(statement)
    if found < SCHEMA_VERSION:
        backend.set_schema_version(session, SCHEMA_VERSION)
    return found
