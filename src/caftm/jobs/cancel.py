"""Cancelling a job: asked of its live supervisor through the ledger, or done here without one."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from caftm._notice import notice
from caftm.ledger.jobs import JobBook, JobRecord, JobStatus, LegStatus
from caftm.ledger.store import pid_alive

if TYPE_CHECKING:
    from caftm.jobs.legs import LegEnd

__all__ = ["cancel_job", "close_cancelled"]


def cancel_job(book: JobBook, name: str, *, poll_s: float = 0.1) -> str:
    """Cancel a job; returns what happened, in one line.

    With a live supervisor, it is asked (through the ledger) and stops the worker after its
    checkpoint. Without one, a worker left running is sent SIGTERM here (it checkpoints and
    exits; SIGKILL after the job's grace period) and its leg is closed as cancelled.

    Raises:
        ConfigError: no such job.
    """
    record = book.get(name)
    if record.status.finished:
        return f"job {name} is {record.status.value} already"
    book.update(name, cancel_requested=True)
    owner = record.supervisor_pid
    if owner is not None and record.supervisor_host == socket.gethostname() and pid_alive(owner):
        return f"cancel requested; the supervisor (process {owner}) stops job {name}"
    grace_s = float(record.spec.get("job", {}).get("grace_s", 30.0))
    for leg in book.legs(name):
        if leg.status is not LegStatus.RUNNING:
            continue
        if leg.pid is not None and leg.host == socket.gethostname() and pid_alive(leg.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leg.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while pid_alive(leg.pid) and time.monotonic() < deadline:
                time.sleep(poll_s)
            if pid_alive(leg.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(leg.pid, signal.SIGKILL)
        book.end_leg(name, leg.leg, LegStatus.CANCELLED, message="cancelled without a supervisor")
    book.update(name, status=JobStatus.CANCELLED, message="cancelled", cancel_requested=False,
                ended_at=datetime.now(UTC))  # fmt: skip
    return f"job {name} cancelled"


def close_cancelled(book: JobBook, job: JobRecord, ended: tuple[int, LegEnd] | None) -> JobRecord:
    """A supervisor's end of a cancel: the leg that was stopped for it (if any) and the job
    recorded cancelled."""
    step = book.get(job.name).step
    if ended is not None:
        leg, end = ended
        book.end_leg(job.name, leg, LegStatus.CANCELLED, exit_code=end.exit_code,
                     end_step=end.reached)  # fmt: skip
        step = end.reached if end.reached is not None else step
    message = f"cancelled after step {step}"
    notice("job %s %s", job.name, message)
    return book.update(job.name, status=JobStatus.CANCELLED, message=message, step=step,
                       ended_at=datetime.now(UTC), cancel_requested=False)  # fmt: skip
