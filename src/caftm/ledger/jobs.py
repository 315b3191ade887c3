"""Jobs, their legs and checkpoint transfers in the ledger: typed statuses, stored.

A *job* is one training run from start to completion, possibly across sites; each start of its
worker is a *leg*. The supervisor keeps the job's state here, so a supervisor killed with
``kill -9`` and started again picks the job up where it was.

Job statuses and their transitions::

    PENDING ──► RUNNING ──► SUCCEEDED
                 │  ▲  ╲──► FAILED (crashes past the limit, a worker that cannot start)
                 │  │   ╲─► CANCELLED ──► RESTARTING (a rerun resumes a failed or
                 ▼  │                                  cancelled job)
     MOVING / PAUSED / RESTARTING   (between legs: transferring, waiting, backing off)

Every status change goes through :meth:`JobBook.update`, which refuses those
:data:`JOB_TRANSITIONS` does not list. Leg statuses: ``running`` while its worker lives, then
how it ended: ``completed``, ``moved``, ``paused``, ``preempted``, ``crashed``, ``cancelled``,
or ``interrupted`` (its process died with no outcome while no supervisor watched it). A leg
is never left ``running`` once its process is gone, and ends once (:meth:`JobBook.end_leg`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from caftm.errors import ConfigError, LedgerError
from caftm.ledger.store import Ledger
from caftm.records import RunStatus

__all__ = [
    "JOB_TRANSITIONS",
    "JobBook",
    "JobRecord",
    "JobStatus",
    "JobTotals",
    "LegRecord",
    "LegStatus",
    "TransferRecord",
    "TransferStatus",
    "lease_holder",
    "lease_owner_id",
]


class JobStatus(StrEnum):
    """Where a job is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    MOVING = "moving"
    PAUSED = "paused"
    RESTARTING = "restarting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED."""
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class LegStatus(StrEnum):
    """How one start of the worker is doing or ended."""

    RUNNING = "running"
    COMPLETED = "completed"
    MOVED = "moved"
    PAUSED = "paused"
    PREEMPTED = "preempted"
    CRASHED = "crashed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


_LIVE = frozenset(s for s in JobStatus if not s.finished)
JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    **{live: frozenset(JobStatus) - {JobStatus.PENDING} for live in _LIVE},
    JobStatus.PENDING: frozenset(JobStatus),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.RESTARTING}),
    JobStatus.CANCELLED: frozenset({JobStatus.RESTARTING}),
}
"""The statuses a job may change to, by its status now (see :meth:`JobBook.update`)."""


class TransferStatus(StrEnum):
    """How a checkpoint transfer is doing or ended."""

    STARTED = "started"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as stored (times UTC; ``pause_until`` set while PAUSED)."""

    name: str
    status: JobStatus
    site: str
    leg: int
    step: int
    store_url: str
    executor: str
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    moves: int
    pauses: int
    preemptions: int
    crashes: int
    pause_until: datetime | None
    supervisor_pid: int | None
    supervisor_host: str | None
    cancel_requested: bool
    message: str
    spec: dict[str, Any]
    lease_owner: str | None = None
    lease_expires_s: float | None = None


@dataclass(frozen=True, slots=True)
class LegRecord:
    """One leg as stored."""

    job: str
    leg: int
    site: str
    status: LegStatus
    started_at: datetime
    ended_at: datetime | None
    executor: str
    external_id: str | None
    node: str | None
    pid: int | None
    host: str | None
    exit_code: int | None
    start_step: int | None
    end_step: int | None
    message: str


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """One checkpoint transfer between two sites' stores (bytes, s)."""

    job: str
    leg: int
    time: datetime
    src_site: str
    dst_site: str
    src_url: str
    dst_url: str
    step: int | None
    bytes: int | None
    seconds: float | None
    status: TransferStatus
    message: str


@dataclass(frozen=True, slots=True)
class JobTotals:
    """Sums over every measured window of a job's runs (energy J, carbon g; None when nothing
    was metered)."""

    steps: int
    energy_j: float | None
    carbon_g: float | None


_JOB_COLUMNS = (
    "name, status, site, leg, step, store_url, executor, created_at, updated_at, ended_at, moves,"
    " pauses, preemptions, crashes, pause_until, supervisor_pid, supervisor_host,"
    " cancel_requested, message, spec_json, lease_owner, lease_expires_s"
)
_NEW_JOB_COLUMNS = _JOB_COLUMNS.rsplit(", lease_owner", 1)[0]
_LEG_COLUMNS = (
    "job, leg, site, status, started_at, ended_at, executor, external_id, node, pid, host,"
    " exit_code, start_step, end_step, message"
)
_UPDATABLE = {
    "status", "site", "leg", "step", "store_url", "ended_at", "moves", "pauses", "preemptions",
    "crashes", "pause_until", "supervisor_pid", "supervisor_host", "cancel_requested", "message",
}  # fmt: skip
_LEG_UPDATABLE = {
    "external_id", "node", "pid", "host", "exit_code", "start_step", "end_step", "message",
}  # fmt: skip


def _iso(time: datetime | None) -> str | None:
    return None if time is None else time.astimezone(UTC).isoformat()


def _when(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _now() -> datetime:
    return datetime.now(UTC)


def _stored(value: object) -> object:
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, bool):
        return int(value)
    return value


class JobBook:
    """The job supervisor's records in a :class:`~caftm.ledger.Ledger`."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # -- jobs ----------------------------------------------------------------------------------
    def create(
        self, name: str, *, site: str, store_url: str, executor: str, spec: dict[str, Any]
    ) -> JobRecord:
        """Record a new PENDING job.

        Raises:
            ConfigError: a job of this name exists already.
        """
        if self.find(name) is not None:
            raise ConfigError(f"job {name!r} exists already in ledger {self.ledger.shown}")
        now = _iso(_now())
        self.ledger._write(
            f"INSERT INTO jobs ({_NEW_JOB_COLUMNS}) VALUES "
            "(?, ?, ?, 0, 0, ?, ?, ?, ?, NULL, 0, 0, 0, 0, NULL, NULL, NULL, 0, '', ?)",
            (name, JobStatus.PENDING.value, site, store_url, executor, now, now,
             json.dumps(spec, default=str)),
        )  # fmt: skip
        return self.get(name)

    def find(self, name: str) -> JobRecord | None:
        """The job of this name, or None."""
        rows = self.ledger._read(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE name = ?", (name,))
        return _job(rows[0]) if rows else None

    def get(self, name: str) -> JobRecord:
        """The job of this name.

        Raises:
            ConfigError: there is none.
        """
        job = self.find(name)
        if job is None:
            raise ConfigError(f"no job {name!r} in ledger {self.ledger.shown}; see `caftm jobs`")
        return job

    def jobs(self) -> list[JobRecord]:
        """Every job, newest first."""
        rows = self.ledger._read(
            f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY created_at DESC, rowid DESC"
        )
        return [_job(r) for r in rows]

    def update(self, name: str, **fields: object) -> JobRecord:
        """Change some of a job's fields (and its ``updated_at``); returns the job as stored.

        The one gate of a job's status: a change ``status=`` must be listed in
        :data:`JOB_TRANSITIONS` (checked and written in one statement, so two writers cannot
        both pass it)::

            from                          to
            PENDING                       any status
            RUNNING, MOVING, PAUSED,      any status but PENDING
            RESTARTING
            SUCCEEDED                     nothing (a finished job is not trained again)
            FAILED, CANCELLED             RESTARTING (a rerun resumes it, Supervisor._claim)

        Raises:
            ConfigError: an unknown field or status, or no such job.
            LedgerError: the status change is refused (or sqlite failed).
        """
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ConfigError(f"cannot update job fields {sorted(unknown)}")
        target = None if "status" not in fields else _job_status(fields["status"])
        fields["updated_at"] = _now()
        names = ", ".join(f"{k} = ?" for k in fields)
        values = tuple(_stored(v) for v in fields.values())
        if target is None:
            self.ledger._write(f"UPDATE jobs SET {names} WHERE name = ?", (*values, name))
            return self.get(name)
        sources = [s.value for s in JobStatus if target in JOB_TRANSITIONS[s]]
        marks = ", ".join("?" * len(sources))
        changed = self.ledger._write(
            f"UPDATE jobs SET {names} WHERE name = ? AND status IN ({marks})",
            (*values, name, *sources),
        )
        job = self.get(name)
        if not changed:
            allowed = ", ".join(s.value for s in JobStatus if s in JOB_TRANSITIONS[job.status])
            raise LedgerError(
                f"job {name} is {job.status.value}: it cannot become {target.value} "
                f"(from {job.status.value} only to: {allowed or 'nothing'})"
            )
        return job

    def count(self, name: str, field: str) -> JobRecord:
        """Add one to a job's ``moves``, ``pauses``, ``preemptions`` or ``crashes``."""
        if field not in ("moves", "pauses", "preemptions", "crashes"):
            raise ConfigError(f"cannot count job field {field!r}")
        self.ledger._write(f"UPDATE jobs SET {field} = {field} + 1 WHERE name = ?", (name,))
        return self.get(name)

    # -- the supervisor's lease ----------------------------------------------------------------
    def take_lease(
        self, name: str, owner: str, *, now_s: float, lease_s: float, replacing: str | None = None
    ) -> bool:
        """Make ``owner`` the job's one supervisor until ``now_s + lease_s`` (POSIX s) if the
        lease is free, expired, its own already, or held by ``replacing`` (a holder known dead);
        returns whether it did. One conditional UPDATE: of two supervisors racing for a job, one
        wins.
        """
        owner_pid, owner_host = _owner_process(owner)
        changed = self.ledger._write(
            "UPDATE jobs SET lease_owner = ?, lease_expires_s = ?, supervisor_pid = ?,"
            " supervisor_host = ?, updated_at = ? WHERE name = ? AND (lease_owner IS NULL"
            " OR lease_owner = ? OR lease_expires_s IS NULL OR lease_expires_s < ?"
            " OR lease_owner = ?)",
            (owner, now_s + lease_s, owner_pid, owner_host, _iso(_now()), name, owner, now_s,
             replacing or owner),
        )  # fmt: skip
        return changed == 1

    def renew_lease(self, name: str, owner: str, *, now_s: float, lease_s: float) -> bool:
        """Extend ``owner``'s lease (its heartbeat); False when it holds the lease no more."""
        changed = self.ledger._write(
            "UPDATE jobs SET lease_expires_s = ? WHERE name = ? AND lease_owner = ?",
            (now_s + lease_s, name, owner),
        )
        return changed == 1

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up (nothing when ``owner`` holds it no more)."""
        self.ledger._write(
            "UPDATE jobs SET lease_owner = NULL, lease_expires_s = NULL, supervisor_pid = NULL"
            " WHERE name = ? AND lease_owner = ?",
            (name, owner),
        )

    # -- legs ----------------------------------------------------------------------------------
    def start_leg(
        self, job: str, leg: int, *, site: str, executor: str, start_step: int | None
    ) -> LegRecord:
        """Record leg ``leg`` of ``job`` as RUNNING."""
        self.ledger._write(
            f"INSERT INTO legs ({_LEG_COLUMNS}) VALUES "
            "(?, ?, ?, ?, ?, NULL, ?, NULL, NULL, NULL, NULL, NULL, ?, NULL, '')",
            (job, leg, site, LegStatus.RUNNING.value, _iso(_now()), executor, start_step),
        )
        return self.get_leg(job, leg)

    def update_leg(self, job: str, leg: int, **fields: object) -> LegRecord:
        """Change some of a leg's fields (not its status: :meth:`end_leg`); returns the leg.

        Raises:
            ConfigError: an unknown field.
        """
        unknown = set(fields) - _LEG_UPDATABLE
        if unknown:
            raise ConfigError(f"cannot update leg fields {sorted(unknown)}")
        names = ", ".join(f"{k} = ?" for k in fields)
        self.ledger._write(
            f"UPDATE legs SET {names} WHERE job = ? AND leg = ?",
            (*(_stored(v) for v in fields.values()), job, leg),
        )
        return self.get_leg(job, leg)

    def end_leg(self, job: str, leg: int, status: LegStatus, **fields: object) -> LegRecord:
        """Close a running leg with ``status`` and close its runs still marked running.

        Raises:
            ConfigError: an unknown field, or no such leg.
            LedgerError: the leg ended already, or ``status`` is RUNNING.
        """
        record = self._close_leg(job, leg, status, fields)
        if record is None:
            ended = self.get_leg(job, leg)
            raise LedgerError(
                f"leg {leg} of job {job} ended already ({ended.status.value}); "
                f"it cannot end again as {status.value}"
            )
        return record

    def _close_leg(
        self, job: str, leg: int, status: LegStatus, fields: dict[str, object]
    ) -> LegRecord | None:
        """:meth:`end_leg`, or None when the leg is not running (someone else ended it)."""
        if status is LegStatus.RUNNING:
            raise LedgerError(f"leg {leg} of job {job} cannot end as running")
        unknown = set(fields) - _LEG_UPDATABLE
        if unknown:
            raise ConfigError(f"cannot update leg fields {sorted(unknown)}")
        fields = {"status": status, "ended_at": _now(), **fields}
        names = ", ".join(f"{k} = ?" for k in fields)
        changed = self.ledger._write(
            f"UPDATE legs SET {names} WHERE job = ? AND leg = ? AND status = ?",
            (*(_stored(v) for v in fields.values()), job, leg, LegStatus.RUNNING.value),
        )
        if not changed:
            self.get_leg(job, leg)  # ConfigError when there is no such leg
            return None
        run_status = (
            RunStatus.INTERRUPTED
            if status in (LegStatus.CRASHED, LegStatus.INTERRUPTED)
            else RunStatus(status.value)
        )
        self.ledger._write(
            "UPDATE runs SET status = ?, ended_at = ? WHERE job = ? AND leg = ? AND status = ?",
            (run_status.value, _iso(_now()), job, leg, RunStatus.RUNNING.value),
        )
        return self.get_leg(job, leg)

    def reap_dead_legs(self) -> int:
        """Mark ``interrupted`` the running legs on this host whose worker and supervisor are
        both gone (nobody is left to record how they ended); returns how many."""
        import socket

        from caftm.ledger.store import pid_alive

        host = socket.gethostname()
        reaped = 0
        for job in self.jobs():
            supervised = (
                job.supervisor_pid is not None
                and job.supervisor_host == host
                and pid_alive(job.supervisor_pid)
            )
            for leg in self.legs(job.name):
                if (
                    leg.status is LegStatus.RUNNING
                    and leg.host == host
                    and not supervised
                    and (leg.pid is None or not pid_alive(leg.pid))
                ):
                    closed = self._close_leg(job.name, leg.leg, LegStatus.INTERRUPTED,
                                             {"message": "its process died unwatched"})  # fmt: skip
                    reaped += closed is not None
        return reaped

    def get_leg(self, job: str, leg: int) -> LegRecord:
        """One leg (raises ConfigError when missing)."""
        rows = self.ledger._read(
            f"SELECT {_LEG_COLUMNS} FROM legs WHERE job = ? AND leg = ?", (job, leg)
        )
        if not rows:
            raise ConfigError(f"job {job!r} has no leg {leg}")
        return _leg(rows[0])

    def legs(self, job: str) -> list[LegRecord]:
        """The job's legs, first to last."""
        rows = self.ledger._read(
            f"SELECT {_LEG_COLUMNS} FROM legs WHERE job = ? ORDER BY leg", (job,)
        )
        return [_leg(r) for r in rows]

    def totals(self, job: str) -> JobTotals:
        """Steps, energy and carbon over every window of the job's runs."""
        rows = self.ledger._read(
            "SELECT COALESCE(SUM(w.steps), 0), SUM(w.energy_j), SUM(w.carbon_g) FROM windows w"
            " JOIN runs r ON r.run_id = w.run_id WHERE r.job = ?",
            (job,),
        )
        steps, energy, carbon = rows[0]
        return JobTotals(int(steps), energy, carbon)

    # -- transfers -----------------------------------------------------------------------------
    def record_transfer(self, record: TransferRecord) -> int:
        """Store one transfer (started, done or failed); returns its id."""
        rows = self.ledger._read_write(
            "INSERT INTO transfers (job, leg, time, src_site, dst_site, src_url, dst_url, step,"
            " bytes, seconds, status, message) VALUES (?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
            (record.job, record.leg, _iso(record.time), record.src_site, record.dst_site,
             record.src_url, record.dst_url, record.step, record.bytes, record.seconds,
             TransferStatus(record.status).value, record.message),
        )  # fmt: skip
        return int(rows[0][0])

    def finish_transfer(
        self, transfer_id: int, *, status: TransferStatus, step: int | None = None,
        size_bytes: int | None = None, seconds: float | None = None, message: str = "",
    ) -> None:  # fmt: skip
        """Record how a started transfer ended."""
        self.ledger._write(
            "UPDATE transfers SET status = ?, step = COALESCE(?, step), bytes = ?, seconds = ?,"
            " message = ? WHERE id = ?",
            (TransferStatus(status).value, step, size_bytes, seconds, message, transfer_id),
        )

    def transfers(self, job: str) -> list[TransferRecord]:
        """The job's transfers, oldest first."""
        rows = self.ledger._read(
            "SELECT job, leg, time, src_site, dst_site, src_url, dst_url, step, bytes, seconds,"
            " status, message FROM transfers WHERE job = ? ORDER BY id",
            (job,),
        )
        return [
            TransferRecord(r[0], r[1], datetime.fromisoformat(r[2]), r[3], r[4], r[5], r[6],
                           r[7], r[8], r[9], TransferStatus(r[10]), r[11])
            for r in rows
        ]  # fmt: skip


def _job(row: Any) -> JobRecord:
    return JobRecord(
        row[0], JobStatus(row[1]), row[2], row[3], row[4], row[5], row[6],
        datetime.fromisoformat(row[7]), datetime.fromisoformat(row[8]), _when(row[9]),
        row[10], row[11], row[12], row[13], _when(row[14]), row[15], row[16], bool(row[17]),
        row[18], json.loads(row[19] or "{}"), row[20], row[21],
    )  # fmt: skip


def _leg(row: Any) -> LegRecord:
    return LegRecord(
        row[0], row[1], row[2], LegStatus(row[3]), datetime.fromisoformat(row[4]),
        _when(row[5]), *row[6:],
    )  # fmt: skip


def lease_owner_id(pid: int, host: str, token: str) -> str:
    """A supervisor's name in a lease: ``host/pid/token`` (the token tells apart two
    supervisors that reused one pid)."""
    return f"{host}/{pid}/{token}"


def _owner_process(owner: str) -> tuple[int | None, str | None]:
    """The pid and host a lease owner names (None, None for a name of another form)."""
    parts = owner.rsplit("/", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None, None
    return int(parts[1]), parts[0]


def lease_holder(job: JobRecord) -> tuple[int | None, str | None]:
    """The pid and host of the job's lease owner (None, None: no lease, or a foreign name)."""
    return (None, None) if job.lease_owner is None else _owner_process(job.lease_owner)


def _job_status(value: object) -> JobStatus:
    """``value`` as a :class:`JobStatus` (ConfigError when it is none)."""
    try:
        return JobStatus(str(value))
    except ValueError:
        raise ConfigError(f"unknown job status {value!r}") from None
