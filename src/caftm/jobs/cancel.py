"""Cancelling a job: asked of its live supervisor through the ledger, or done here without one."""

from __future__ import annotations

import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from caftm._notice import notice
from caftm.errors import ExecutorError, LedgerError
from caftm.jobs.executors.base import EXIT_UNKNOWN, leg_folder
from caftm.ledger.jobs import JobBook, JobRecord, JobStatus, LegStatus
from caftm.ledger.store import pid_alive

if TYPE_CHECKING:
    from caftm.jobs.executors import Executor, LegRef
    from caftm.jobs.legs import LegEnd

__all__ = ["cancel_job", "close_cancelled"]


def cancel_job(book: JobBook, name: str, *, executor: Executor | None = None) -> str:
    """Cancel a job; returns what happened, in one line.

    With a live supervisor, it is asked (through the ledger) and stops the worker after its
    checkpoint. Without one, each leg left running is stopped here through its executor (local:
    SIGTERM to its process group; Ray: ``stop_job``; SkyPilot: its cancel): the worker
    checkpoints and exits (SIGKILL after the job's grace period), and the leg is closed as
    cancelled with the step it reached.

    Args:
        executor: the executor of the job's legs (default: the one each leg names, set up from
            the job's recorded ``job:`` section).

    Raises:
        ConfigError: no such job.
        ExecutorError: a leg could not be stopped, or whether it runs cannot be known; the job
            is then not marked cancelled (its worker may still train).
    """
    from caftm.jobs.executors import LegRef, get_executor
    from caftm.jobs.legs import LegEnd
    from caftm.jobs.spec import JobSection

    record = book.get(name)
    if record.status.finished:
        return f"job {name} is {record.status.value} already"
    book.update(name, cancel_requested=True)
    owner = record.supervisor_pid
    if owner is not None and record.supervisor_host == socket.gethostname() and pid_alive(owner):
        return f"cancel requested; the supervisor (process {owner}) stops job {name}"
    section = JobSection.model_validate(record.spec["job"])
    stopped: list[str] = []
    for leg in book.legs(name):
        if leg.status is not LegStatus.RUNNING:
            continue
        engine = executor or get_executor(leg.executor, section)
        try:
            code = engine.stop_leg(leg, section.grace_s)
            ref = LegRef(name, leg.leg, leg.site, leg_folder(Path(section.workdir) / name, leg.leg))
            try:
                request = engine.outcome(ref)
            except ExecutorError:
                request = None
            _import_spool(book, ref)  # a remote leg's measurements, before it is closed
            end = LegEnd(request, EXIT_UNKNOWN if code is None else code, engine.status(ref))
        except ExecutorError as e:
            raise ExecutorError(
                f"cannot stop leg {leg.leg} of job {name} ({leg.executor} "
                f"{leg.external_id or leg.pid}): {e}; it may still run, so the job is not "
                "marked cancelled (run `caftm cancel` again)"
            ) from e
        finally:
            if executor is None:
                engine.close()
        book.end_leg(name, leg.leg, LegStatus.CANCELLED, exit_code=code, end_step=end.reached,
                     message="cancelled without a supervisor")  # fmt: skip
        if end.reached is not None:
            book.update(name, step=end.reached)
        how = "had ended" if code is None else f"stopped through {leg.executor}"
        stopped.append(f"leg {leg.leg} {how} after step {end.reached}")
    job = close_cancelled(book, book.get(name), None, quiet=True)
    return f"job {name} {job.message}" + (f" ({'; '.join(stopped)})" if stopped else "")


def _import_spool(book: JobBook, ref: LegRef) -> None:
    """Bring what the stopped leg spooled (a worker that could not reach the ledger) into it."""
    from caftm.ledger.spool import SPOOL_FILE, import_spool

    path = ref.folder / SPOOL_FILE
    if not path.exists():
        return
    try:
        import_spool(book.ledger, path)
    except LedgerError as e:
        notice("leg %d of job %s: its measurements were not imported: %s", ref.leg, ref.job, e,
               warning=True)  # fmt: skip


def close_cancelled(
    book: JobBook, job: JobRecord, ended: tuple[int, LegEnd] | None, *, quiet: bool = False
) -> JobRecord:
    """The end of a cancel: the leg that was stopped for it (if any) and the job recorded
    cancelled, with the step it reached (said on the terminal unless ``quiet``)."""
    step = book.get(job.name).step
    if ended is not None:
        leg, end = ended
        book.end_leg(job.name, leg, LegStatus.CANCELLED, exit_code=end.exit_code,
                     end_step=end.reached)  # fmt: skip
        step = end.reached if end.reached is not None else step
    message = f"cancelled after step {step}"
    if not quiet:
        notice("job %s %s", job.name, message)
    return book.update(job.name, status=JobStatus.CANCELLED, message=message, step=step,
                       ended_at=datetime.now(UTC), cancel_requested=False)  # fmt: skip
