"""A leg's measurements when its worker cannot reach the ledger: an append-only spool file next
to its outcome and status, imported by the supervisor exactly once.

The worker (one writer per leg) appends one JSON line per record — its run, each window and
event, the run's end — each with a key unique to the run (``RUN:SEQ``); a line is complete only
with its newline, so a line being written when the supervisor reads is left for the next import.
:func:`import_spool` inserts what the ledger lacks (windows and events carry their key in the
ledger, ``spool_key``, unique), so an import interrupted at any point — the supervisor killed
mid-import — and repeated stores every record exactly once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from caftm._protocol_env import ENV_STATUS_FILE
from caftm._units import carbon_g
from caftm.errors import ConfigError, LedgerError
from caftm.ledger.backend import BackendError, is_url
from caftm.records import Event, RunStatus

__all__ = [
    "SPOOL_FILE",
    "SPOOL_LOCATION",
    "MeasurementWriter",
    "SpoolWriter",
    "import_spool",
    "open_for_worker",
]

log = logging.getLogger(__name__)

SPOOL_LOCATION = "spool:"
"""A worker's ledger location meaning "the spool only" (a leg on a VM that reaches nothing but
its bucket)."""
SPOOL_FILE = "ledger-spool.jsonl"
"""The spool's name in a leg's folder (beside ``outcome.json`` and ``status.json``)."""
IMPORT_BATCH = 200
"""Records imported per transaction."""


class MeasurementWriter(Protocol):
    """What a worker's controller writes through: a :class:`~caftm.ledger.Ledger` or a
    :class:`SpoolWriter`."""

    @property
    def dropped_records(self) -> int: ...

    def start_run(
        self, *, name: str, policy: str, site: str, started_at: datetime, simulated: bool = False,
        config: dict[str, object] | None = None, run_id: str | None = None,
        job: str | None = None, leg: int | None = None,
    ) -> str: ...  # fmt: skip

    def record_window(
        self, run_id: str, *, time: datetime, duration_s: float, steps: int,
        setting: float | None, knob: str | None, energy_j: float | None,
        intensity_g_per_kwh: float | None, site: str, phase: str,
    ) -> None: ...  # fmt: skip

    def record_event(self, run_id: str, event: Event) -> None: ...

    def record_plan(self, run_id: str, time: datetime, plan: Mapping[str, object]) -> None: ...

    def end_run(
        self, run_id: str, *, ended_at: datetime, status: RunStatus = RunStatus.FINISHED
    ) -> None: ...

    def close(self) -> None: ...


def remote_worker_ledger(supervisors: str | Path) -> str:
    """The ledger a worker on another machine (a cloud VM) writes: the supervisor's PostgreSQL
    (where the VM cannot reach it, it spools), else :data:`SPOOL_LOCATION` (the supervisor's
    file is on another machine)."""
    return str(supervisors) if is_url(supervisors) else SPOOL_LOCATION


def open_for_worker(location: str | Path) -> MeasurementWriter:
    """The ledger at ``location``; for a supervised worker that cannot reach it (or is told
    :data:`SPOOL_LOCATION`), a spool in its leg's folder (beside ``$CAFTM_STATUS_FILE``) that
    the supervisor imports.

    Raises:
        ConfigError: the ledger cannot be opened and no supervisor gave a leg folder.
    """
    from caftm.ledger.store import Ledger

    status = os.environ.get(ENV_STATUS_FILE)
    if str(location) == SPOOL_LOCATION:
        if not status:
            raise ConfigError(f"ledger {SPOOL_LOCATION} needs a supervisor's ${ENV_STATUS_FILE}")
        return SpoolWriter(Path(status).parent / SPOOL_FILE)
    try:
        return Ledger(location)
    except ConfigError as e:
        if not status:
            raise
        spool = Path(status).parent / SPOOL_FILE
        log.warning("%s; spooling measurements to %s for the supervisor", e, spool)
        return SpoolWriter(spool)


def _iso(time: datetime) -> str:
    return time.astimezone(UTC).isoformat()


class SpoolWriter:
    """Appends a worker's run, windows and events to ``path`` (the writer side of
    :class:`~caftm.ledger.Ledger` the controller uses)."""

    read_only = False
    dropped_records = 0

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shown = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._seq = 0

    def _append(self, run_id: str, kind: str, **fields: Any) -> None:
        with self._lock:
            self._seq += 1
            line = {"key": f"{run_id}:{self._seq}", "kind": kind, "run_id": run_id, **fields}
            try:
                self._file.write(json.dumps(line, default=str) + "\n")
                self._file.flush()
            except OSError as e:
                raise LedgerError(f"cannot append to spool {self.path}: {e}") from e

    def start_run(
        self, *, name: str, policy: str, site: str, started_at: datetime, simulated: bool = False,
        config: dict[str, object] | None = None, run_id: str | None = None,
        job: str | None = None, leg: int | None = None,
    ) -> str:  # fmt: skip
        """Spool a new run; returns its id."""
        run_id = run_id or uuid.uuid4().hex[:12]
        self._append(run_id, "run", name=name, policy=policy, site=site,
                     started_at=_iso(started_at), simulated=int(simulated), config=config or {},
                     job=job, leg=leg, pid=os.getpid(), host=os.uname().nodename)  # fmt: skip
        return run_id

    def record_window(
        self, run_id: str, *, time: datetime, duration_s: float, steps: int,
        setting: float | None, knob: str | None, energy_j: float | None,
        intensity_g_per_kwh: float | None, site: str, phase: str,
    ) -> None:  # fmt: skip
        """Spool one measured window."""
        self._append(run_id, "window", time=_iso(time), duration_s=duration_s, steps=steps,
                     setting=setting, knob=knob, energy_j=energy_j,
                     intensity_g_per_kwh=intensity_g_per_kwh, site=site, phase=phase)  # fmt: skip

    def record_event(self, run_id: str, event: Event) -> None:
        """Spool one controller transition."""
        self._append(run_id, "event", time=_iso(event.time), from_state=event.from_state.value,
                     to_state=event.to_state.value, reason=event.reason,
                     intensity_g_per_kwh=event.intensity_g_per_kwh, site=event.site,
                     gpu_setting=event.gpu_setting)  # fmt: skip

    def record_plan(self, run_id: str, time: datetime, plan: Mapping[str, object]) -> None:
        """Spool the run's current plan."""
        self._append(run_id, "plan", time=_iso(time), plan=dict(plan))

    def end_run(
        self, run_id: str, *, ended_at: datetime, status: RunStatus = RunStatus.FINISHED
    ) -> None:
        """Spool the run's end."""
        self._append(run_id, "end", ended_at=_iso(ended_at), status=RunStatus(status).value)

    def flush(self) -> None:
        """Every line is flushed as it is written: nothing to do."""

    def close(self) -> None:
        """Sync the file to disk and close it."""
        with self._lock:
            with contextlib.suppress(OSError):
                os.fsync(self._file.fileno())
            self._file.close()


def read_spool(path: Path) -> list[dict[str, Any]]:
    """The spool's complete lines (a last line without its newline is being written: left)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise LedgerError(f"cannot read spool {path}: {e}") from e
    complete = data[: data.rfind(b"\n") + 1]
    records = []
    for number, raw in enumerate(complete.splitlines(), 1):
        try:
            records.append(json.loads(raw))
        except ValueError:
            raise LedgerError(f"spool {path} line {number} is not JSON") from None
    return records


def import_spool(ledger: Any, path: Path) -> int:
    """Store the spool's records the ledger lacks; returns how many were new.

    Safe to repeat and to interrupt: records are keyed, in transactions of
    :data:`IMPORT_BATCH`.

    Raises:
        LedgerError: the spool or the ledger failed.
    """
    records = read_spool(path)
    new = 0
    for start in range(0, len(records), IMPORT_BATCH):
        chunk = records[start : start + IMPORT_BATCH]
        try:
            with ledger._transaction() as session:
                for record in chunk:
                    new += _import_one(session, record)
        except BackendError as e:
            raise LedgerError(f"cannot import spool {path} into {ledger.shown}: {e}") from e
    return new


def _import_one(session: Any, r: dict[str, Any]) -> int:
    kind = r["kind"]
    if kind == "run":
        return int(session.execute(
            "INSERT INTO runs (run_id, name, policy, site, started_at, ended_at, status,"
            " simulated, config_json, job, leg, pid, host)"
            " VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
            (r["run_id"], r["name"], r["policy"], r["site"], r["started_at"],
             RunStatus.RUNNING.value, r["simulated"], json.dumps(r["config"]), r["job"], r["leg"],
             r["pid"], r["host"]),
        ))  # fmt: skip
    if kind == "window":
        energy, ci = r["energy_j"], r["intensity_g_per_kwh"]
        carbon = carbon_g(energy, ci) if energy is not None and ci is not None else None
        return int(session.execute(
            "INSERT INTO windows (run_id, time, duration_s, steps, setting, knob, energy_j,"
            " intensity_g_per_kwh, carbon_g, site, phase, spool_key)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (spool_key) DO NOTHING",
            (r["run_id"], r["time"], r["duration_s"], r["steps"], r["setting"], r["knob"], energy,
             ci, carbon, r["site"], r["phase"], r["key"]),
        ))  # fmt: skip
    if kind == "event":
        return int(session.execute(
            "INSERT INTO events (run_id, time, from_state, to_state, reason,"
            " intensity_g_per_kwh, site, gpu_setting, spool_key)"
            " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (spool_key) DO NOTHING",
            (r["run_id"], r["time"], r["from_state"], r["to_state"], r["reason"],
             r["intensity_g_per_kwh"], r["site"], r["gpu_setting"], r["key"]),
        ))  # fmt: skip
    if kind == "plan":
        return int(session.execute(
            "INSERT INTO plans (run_id, time, plan_json, spool_key)"
            " VALUES (?,?,?,?) ON CONFLICT (spool_key) DO NOTHING",
            (r["run_id"], r["time"], json.dumps(r["plan"], sort_keys=True), r["key"]),
        ))  # fmt: skip
    if kind == "end":
        return int(session.execute(
            "UPDATE runs SET ended_at = ?, status = ? WHERE run_id = ? AND ended_at IS NULL",
            (r["ended_at"], r["status"], r["run_id"]),
        ))  # fmt: skip
    raise LedgerError(f"unknown spool record kind {kind!r}")
