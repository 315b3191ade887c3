"""The run ledger: runs, measurement windows and controller events in one sqlite file (WAL).

Tables::

    runs     (run_id, name, policy, site, started_at, ended_at, status, simulated, config_json,
              job, leg, pid, host)
    windows  (run_id, time, duration_s, steps, setting, knob, energy_j, intensity_g_per_kwh,
              carbon_g, site, phase)
    events   (run_id, time, from_state, to_state, reason, intensity_g_per_kwh, site, gpu_setting)

plus the job supervisor's ``jobs``, ``legs`` and ``transfers`` (see :mod:`caftm.ledger.jobs`;
the schema and its migrations: :mod:`caftm.ledger.schema`). Times are ISO-8601 UTC strings.
One :class:`Ledger` may be shared by threads (reads and writes on its one connection are
serialised by a lock); the controller writes only on its slow path, never per step.
``Ledger(path, read_only=True)`` never writes (for viewers beside a running job).
"""

from __future__ import annotations

import json
import math
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from caftm._protocol_env import ENV_LEDGER
from caftm._units import carbon_g
from caftm.errors import ConfigError, LedgerError
from caftm.ledger.schema import SCHEMA_VERSION, migrate, version
from caftm.records import Event, RunStatus, State


def default_ledger_path() -> Path:
    """``$CAFTM_LEDGER``, else ``$XDG_DATA_HOME/caftm/ledger.sqlite`` (~/.local/share/...)."""
    explicit = os.environ.get(ENV_LEDGER)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "caftm" / "ledger.sqlite"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run with its totals (energy J, carbon g; None when nothing was metered); ``job`` and
    ``leg`` are set for a job's worker."""

    run_id: str
    name: str
    policy: str
    site: str
    started_at: datetime
    ended_at: datetime | None
    status: RunStatus
    simulated: bool
    windows: int
    events: int
    steps: int
    energy_j: float | None
    carbon_g: float | None
    job: str | None
    leg: int | None
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WindowRecord:
    """One measured window as stored, with its row id (increasing in insertion order) and run
    (energy J, intensity gCO2eq/kWh, carbon g)."""

    id: int
    run_id: str
    time: datetime
    duration_s: float
    steps: int
    setting: float | None
    knob: str | None
    energy_j: float | None
    intensity_g_per_kwh: float | None
    carbon_g: float | None
    site: str
    phase: str


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One controller transition as stored, with its row id and run."""

    id: int
    run_id: str
    time: datetime
    from_state: State
    to_state: State
    reason: str
    intensity_g_per_kwh: float | None
    site: str
    gpu_setting: float | None


@dataclass(frozen=True, slots=True)
class RunSpan:
    """What a run's events cover: its first and last event, and why it ended (the reason of
    its move to ``done``; None while it runs)."""

    run_id: str
    site: str
    leg: int | None
    first_event: datetime
    last_event: datetime
    end_reason: str | None


WINDOW_COLUMNS = (
    "w.id, w.run_id, w.time, w.duration_s, w.steps, w.setting, w.knob, w.energy_j,"
    " w.intensity_g_per_kwh, w.carbon_g, w.site, w.phase"
)
EVENT_COLUMNS = (
    "e.id, e.run_id, e.time, e.from_state, e.to_state, e.reason, e.intensity_g_per_kwh, e.site,"
    " e.gpu_setting"
)
_RUN_COLUMNS = (
    "r.run_id, r.name, r.policy, r.site, r.started_at, r.ended_at, r.status, r.simulated,"
    " (SELECT COUNT(*) FROM windows w WHERE w.run_id = r.run_id),"
    " (SELECT COUNT(*) FROM events e WHERE e.run_id = r.run_id),"
    " (SELECT COALESCE(SUM(steps), 0) FROM windows w WHERE w.run_id = r.run_id),"
    " (SELECT SUM(energy_j) FROM windows w WHERE w.run_id = r.run_id),"
    " (SELECT SUM(carbon_g) FROM windows w WHERE w.run_id = r.run_id),"
    " r.job, r.leg, r.config_json"
)


def window_record(row: Any) -> WindowRecord:
    """A :class:`WindowRecord` from a row of :data:`WINDOW_COLUMNS`."""
    return WindowRecord(row[0], row[1], datetime.fromisoformat(row[2]), *row[3:])


def event_record(row: Any) -> EventRecord:
    """An :class:`EventRecord` from a row of :data:`EVENT_COLUMNS`."""
    return EventRecord(
        row[0], row[1], datetime.fromisoformat(row[2]), State(row[3]), State(row[4]), *row[5:]
    )


def _run_summary(row: Any) -> RunSummary:
    return RunSummary(
        row[0], row[1], row[2], row[3], datetime.fromisoformat(row[4]), _when(row[5]),
        RunStatus(row[6]), bool(row[7]), row[8], row[9], row[10], row[11], row[12], row[13],
        row[14], json.loads(row[15] or "{}"),
    )  # fmt: skip


def _iso(time: datetime) -> str:
    return time.astimezone(UTC).isoformat()


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


class Ledger:
    """A sqlite ledger file (created with its folder when missing).

    Raises:
        ConfigError: the file cannot be opened or is not a caftm ledger.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path).expanduser()
        self.read_only = read_only
        self._lock = threading.Lock()
        if read_only:
            self._open_read_only()
            return
        if self.path.is_dir():
            raise ConfigError(
                f"ledger {self.path} is a directory; give a file such as "
                f"{self.path / 'ledger.sqlite'}"
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"cannot open ledger {self.path}: {e}") from e
        try:
            self._check_foreign()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.execute("BEGIN IMMEDIATE")  # one process migrates at a time
            try:
                migrate(self._db)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except (sqlite3.Error, ValueError) as e:
            self._db.close()
            raise ConfigError(f"cannot open ledger {self.path}: {e}") from e

    def _open_read_only(self) -> None:
        """Open without ever writing (no schema changes, no locks that stop a writer).

        Raises:
            ConfigError: the file is missing, unreadable or of a newer schema.
        """
        if not self.path.is_file():
            raise ConfigError(f"no ledger at {self.path}")
        try:
            self._db = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, check_same_thread=False
            )
            self._db.execute("PRAGMA busy_timeout=10000")
            found = version(self._db)
            self._check_foreign()
        except sqlite3.Error as e:
            raise ConfigError(f"cannot open ledger {self.path}: {e}") from e
        if found > SCHEMA_VERSION:
            self._db.close()
            raise ConfigError(f"ledger {self.path} was written by a newer caftm (schema {found})")

    def _check_foreign(self) -> None:
        """Refuse, before changing anything, a sqlite file that holds other tables than ours.

        Raises:
            ConfigError: the file has tables but no caftm ``runs`` table.
        """
        tables = {
            r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if not tables:
            return
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(runs)")}
        if not {"run_id", "started_at", "status", "simulated"} <= columns:
            self._db.close()
            some = ", ".join(sorted(tables)[:5])
            raise ConfigError(
                f"{self.path} is not a caftm ledger (it has tables {some}); "
                "give another file with --db or CAFTM_LEDGER"
            )

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _write(self, sql: str, params: tuple[object, ...]) -> int:
        """Run one statement under the connection's lock; returns how many rows it changed.

        Raises:
            LedgerError: sqlite failed (disk full, database locked or damaged).
        """
        if self.read_only:
            raise LedgerError(f"ledger {self.path} was opened read-only")
        with self._lock:
            try:
                return self._db.execute(sql, params).rowcount
            except sqlite3.Error as e:
                raise LedgerError(f"cannot write ledger {self.path}: {e}") from e

    def _read(self, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
        """All rows of a query, run and fetched under the connection's lock.

        Raises:
            LedgerError: sqlite failed (database locked or damaged).
        """
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as e:
                raise LedgerError(f"cannot read ledger {self.path}: {e}") from e

    # -- writing ------------------------------------------------------------------------------
    def start_run(
        self,
        *,
        name: str,
        policy: str,
        site: str,
        started_at: datetime,
        simulated: bool = False,
        config: dict[str, object] | None = None,
        run_id: str | None = None,
        job: str | None = None,
        leg: int | None = None,
    ) -> str:
        """Record a new run (of this process; of leg ``leg`` of ``job`` under a supervisor)."""
        run_id = run_id or uuid.uuid4().hex[:12]
        self._write(
            "INSERT INTO runs (run_id, name, policy, site, started_at, ended_at, status,"
            " simulated, config_json, job, leg, pid, host)"
            " VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                name,
                policy,
                site,
                _iso(started_at),
                RunStatus.RUNNING.value,
                int(simulated),
                json.dumps(config or {}, default=str),
                job,
                leg,
                os.getpid(),
                socket.gethostname(),
            ),
        )
        return run_id

    def reap_dead_runs(self, *, ended_at: datetime | None = None) -> int:
        """Mark ``interrupted`` the runs still ``running`` whose process on this host is gone.

        Returns how many were marked. A killed process cannot close its own run; this keeps
        the ledger from showing it running forever.
        """
        rows = self._read(
            "SELECT run_id, pid FROM runs WHERE status = ? AND host = ? AND pid IS NOT NULL",
            (RunStatus.RUNNING.value, socket.gethostname()),
        )
        dead = [run_id for run_id, pid in rows if not pid_alive(int(pid))]
        when = _iso(ended_at or datetime.now(UTC))
        for run_id in dead:
            self._write(
                "UPDATE runs SET status = ?, ended_at = ? WHERE run_id = ? AND status = ?",
                (RunStatus.INTERRUPTED.value, when, run_id, RunStatus.RUNNING.value),
            )
        return len(dead)

    def end_run(
        self, run_id: str, *, ended_at: datetime, status: RunStatus = RunStatus.FINISHED
    ) -> None:
        """Mark a run ended (``finished``, ``failed``, ``moved``...).

        Raises:
            ConfigError: ``status`` is no :class:`RunStatus`.
        """
        try:
            status = RunStatus(status)
        except ValueError:
            raise ConfigError(
                f"unknown run status {status!r}; one of {', '.join(RunStatus)}"
            ) from None
        self._write(
            "UPDATE runs SET ended_at = ?, status = ? WHERE run_id = ?",
            (_iso(ended_at), status.value, run_id),
        )

    def record_event(self, run_id: str, event: Event) -> None:
        """Store one controller transition."""
        self._write(
            "INSERT INTO events (run_id, time, from_state, to_state, reason, intensity_g_per_kwh,"
            " site, gpu_setting) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                _iso(event.time),
                event.from_state.value,
                event.to_state.value,
                event.reason,
                _num(event.intensity_g_per_kwh),
                event.site,
                event.gpu_setting,
            ),
        )

    def record_window(
        self,
        run_id: str,
        *,
        time: datetime,
        duration_s: float,
        steps: int,
        setting: float | None,
        knob: str | None,
        energy_j: float | None,
        intensity_g_per_kwh: float | None,
        site: str,
        phase: str,
    ) -> None:
        """Store one measured window; its carbon is computed here (g)."""
        energy, ci = _num(energy_j), _num(intensity_g_per_kwh)
        carbon = carbon_g(energy, ci) if energy is not None and ci is not None else None
        self._write(
            "INSERT INTO windows (run_id, time, duration_s, steps, setting, knob, energy_j,"
            " intensity_g_per_kwh, carbon_g, site, phase) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, _iso(time), duration_s, steps, setting, knob, energy, ci, carbon, site, phase),
        )

    def record_plan(self, run_id: str, time: datetime, plan: Mapping[str, object]) -> None:
        """Store the run's current plan (a JSON-able mapping with its format version ``v``)."""
        self._write(
            "INSERT INTO plans (run_id, time, plan_json) VALUES (?, ?, ?)",
            (run_id, _iso(time), json.dumps(dict(plan), sort_keys=True)),
        )

    def latest_plan(
        self, *, run_id: str | None = None, job: str | None = None
    ) -> dict[str, Any] | None:
        """The newest plan of a run, or of a job's runs (None: no plan recorded)."""
        if run_id is not None:
            rows = self._read(
                "SELECT plan_json FROM plans WHERE run_id = ? ORDER BY id DESC LIMIT 1", (run_id,)
            )
        else:
            rows = self._read(
                "SELECT p.plan_json FROM plans p JOIN runs r ON p.run_id = r.run_id "
                "WHERE r.job = ? ORDER BY p.id DESC LIMIT 1",
                (job,),
            )
        if not rows:
            return None
        found: dict[str, Any] = json.loads(rows[0][0])
        return found

    # -- reading ------------------------------------------------------------------------------
    def runs(self, *, outside_jobs: bool = False) -> list[RunSummary]:
        """All runs with their totals, newest first (only those of no job: ``outside_jobs``)."""
        where = " WHERE r.job IS NULL" if outside_jobs else ""
        rows = self._read(
            f"SELECT {_RUN_COLUMNS} FROM runs r{where} ORDER BY r.started_at DESC, r.rowid DESC"
        )
        return [_run_summary(row) for row in rows]

    def run(self, run_id: str) -> RunSummary | None:
        """The run ``run_id`` (its full id) with its totals, or None."""
        rows = self._read(f"SELECT {_RUN_COLUMNS} FROM runs r WHERE r.run_id = ?", (run_id,))
        return _run_summary(rows[0]) if rows else None

    def resolve_run(self, run: str) -> str:
        """The full id of the run whose id starts with ``run``.

        Raises:
            ConfigError: no run, or several, match.
        """
        rows = self._read(  # substr, not LIKE: LIKE ignores case
            "SELECT run_id FROM runs WHERE substr(run_id, 1, ?) = ?", (len(run), run)
        )
        ids = [r[0] for r in rows]
        if run in ids:
            return run
        if len(ids) == 1:
            return str(ids[0])
        if not ids:
            raise ConfigError(f"no run {run!r} in ledger {self.path}; see `caftm runs`")
        raise ConfigError(f"run id {run!r} is ambiguous in {self.path}: {', '.join(ids[:5])}")

    def events(self, run_id: str) -> list[EventRecord]:
        """The run's events, oldest first."""
        rows = self._read(
            f"SELECT {EVENT_COLUMNS} FROM events e WHERE e.run_id = ? ORDER BY e.time, e.id",
            (run_id,),
        )
        return [event_record(r) for r in rows]

    def windows(self, run_id: str) -> list[WindowRecord]:
        """The run's measured windows, oldest first."""
        rows = self._read(
            f"SELECT {WINDOW_COLUMNS} FROM windows w WHERE w.run_id = ? ORDER BY w.time, w.id",
            (run_id,),
        )
        return [window_record(r) for r in rows]


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (zombies count as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited: it only waits for its parent to read its status
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
