"""Incremental, read-only views of a ledger for viewers beside a running job (dashboard, report).

A viewer keeps the highest row id it has seen and asks only for what came after it::

    feed = Feed(Ledger(path, read_only=True))
    rows = feed.windows(Scope.of_job("move"))            # everything so far
    more = feed.windows(Scope.of_job("move"), after_id=rows[-1].id)

Windows and events are the ledger's own records (:class:`~caftm.ledger.store.WindowRecord`,
:class:`~caftm.ledger.store.EventRecord`), which carry their row id and run; a :class:`Scope`
selects a job's runs (every leg) or one bare run. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from caftm.errors import ConfigError
from caftm.ledger.schema import SCHEMA_VERSION
from caftm.ledger.store import (
    EVENT_COLUMNS,
    WINDOW_COLUMNS,
    EventRecord,
    Ledger,
    RunSpan,
    WindowRecord,
    event_record,
    window_record,
)
from caftm.records import State

__all__ = ["Feed", "Scope"]


@dataclass(frozen=True, slots=True)
class Scope:
    """The runs a view covers: every run of ``job``, or the one run ``run_id``."""

    job: str | None = None
    run_id: str | None = None

    def __post_init__(self) -> None:
        if (self.job is None) == (self.run_id is None):
            raise ValueError("a scope names exactly one of job and run_id")

    @classmethod
    def of_job(cls, name: str) -> Scope:
        """Every run (leg) of the job ``name``."""
        return cls(job=name)

    @classmethod
    def of_run(cls, run_id: str) -> Scope:
        """The one run ``run_id``."""
        return cls(run_id=run_id)

    def where(self, alias: str) -> tuple[str, str]:
        """An SQL condition on the table ``alias`` (with ``run_id``) and its parameter."""
        if self.job is not None:
            return f"{alias}.run_id IN (SELECT run_id FROM runs WHERE job = ?)", self.job
        return f"{alias}.run_id = ?", str(self.run_id)


class Feed:
    """Read-only incremental queries on a :class:`Ledger` (open it with ``read_only=True``).

    Raises:
        ConfigError: the ledger predates jobs (schema < 2): any write command of caftm
            migrates it, a viewer never does.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        (found,) = ledger._read("PRAGMA user_version")[0]
        if int(found) < SCHEMA_VERSION:
            raise ConfigError(
                f"ledger {ledger.path} has schema {found}, older than this caftm's "
                f"{SCHEMA_VERSION}; a viewer never migrates it: run any caftm job or "
                "`caftm runs --db` on it once"
            )

    def windows(
        self, scope: Scope, *, after_id: int = 0, limit: int | None = None
    ) -> list[WindowRecord]:
        """The scope's windows with ``id > after_id``, in id order (at most ``limit``).

        Raises:
            LedgerError: sqlite failed.
        """
        cond, param = scope.where("w")
        rows = self.ledger._read(
            f"SELECT {WINDOW_COLUMNS} FROM windows w"
            f" WHERE {cond} AND w.id > ? ORDER BY w.id LIMIT ?",
            (param, after_id, -1 if limit is None else limit),
        )
        return [window_record(r) for r in rows]

    def events(
        self, scope: Scope, *, after_id: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        """The scope's events with ``id > after_id``, in id order (at most ``limit``).

        Raises:
            LedgerError: sqlite failed.
        """
        cond, param = scope.where("e")
        rows = self.ledger._read(
            f"SELECT {EVENT_COLUMNS} FROM events e WHERE {cond} AND e.id > ? ORDER BY e.id LIMIT ?",
            (param, after_id, -1 if limit is None else limit),
        )
        return [event_record(r) for r in rows]

    def high_water(self) -> tuple[int, int, str]:
        """(highest window id, highest event id, latest job, run or plan change): what a viewer
        compares to know whether anything at all changed since it last looked."""
        rows = self.ledger._read(
            "SELECT (SELECT COALESCE(MAX(id), 0) FROM windows),"
            " (SELECT COALESCE(MAX(id), 0) FROM events),"
            " (SELECT COALESCE(MAX(updated_at), '') FROM jobs)"
            " || '|' || (SELECT COUNT(*) FROM runs WHERE ended_at IS NOT NULL)"
            " || '|' || (SELECT COUNT(*) FROM legs WHERE ended_at IS NOT NULL)"
            " || '|' || (SELECT COALESCE(MAX(id), 0) FROM plans)"
        )
        windows, events, changed = rows[0]
        return int(windows), int(events), str(changed)

    def run_ids(self, scope: Scope) -> list[str]:
        """The scope's runs, oldest first."""
        if scope.run_id is not None:
            return [scope.run_id]
        rows = self.ledger._read(
            "SELECT run_id FROM runs WHERE job = ? ORDER BY started_at, rowid", (scope.job,)
        )
        return [str(r[0]) for r in rows]

    def simulated(self, scope: Scope) -> bool:
        """Whether any of the scope's runs used a simulated GPU."""
        cond, param = scope.where("r")
        rows = self.ledger._read(f"SELECT MAX(r.simulated) FROM runs r WHERE {cond}", (param,))
        return bool(rows[0][0])

    def run_spans(self, scope: Scope) -> list[RunSpan]:
        """What each of the scope's runs with events covers, by leg then first event (cheap: a
        few rows per run, however many windows it has).

        Raises:
            LedgerError: sqlite failed.
        """
        cond, param = scope.where("r")
        rows = self.ledger._read(
            "SELECT r.run_id, r.site, r.leg, MIN(e.time), MAX(e.time),"
            " (SELECT d.reason FROM events d WHERE d.run_id = r.run_id AND d.to_state = ?"
            " ORDER BY d.id DESC LIMIT 1)"
            f" FROM runs r JOIN events e ON e.run_id = r.run_id WHERE {cond}"
            " GROUP BY r.run_id ORDER BY r.leg, MIN(e.time)",
            (State.DONE.value, param),
        )
        return [
            RunSpan(r[0], r[1], r[2], datetime.fromisoformat(r[3]), datetime.fromisoformat(r[4]),
                    r[5])
            for r in rows
        ]  # fmt: skip
