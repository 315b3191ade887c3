"""The one gate of a job's status (JobBook.update) and of a leg's end (JobBook.end_leg)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from caftm.errors import ConfigError, LedgerError
from caftm.ledger import JobBook, JobStatus, Ledger, LegStatus
from caftm.ledger.jobs import JOB_TRANSITIONS

S = JobStatus
LIVE = [S.PENDING, S.RUNNING, S.MOVING, S.PAUSED, S.RESTARTING]

# every status change the supervisor and cancel_job make (caftm.jobs.supervisor), by where
USED = {
    # _claim: a live job keeps its status; a failed or cancelled one resumes (a rerun)
    *((s, s) for s in LIVE),
    (S.FAILED, S.RESTARTING),
    (S.CANCELLED, S.RESTARTING),
    # run(): stopped by a signal; _recover: a leg interrupted, a move finished or dropped
    *((s, S.RESTARTING) for s in LIVE),
    # _start_leg, from a new, restarting or resumed job (legs start after a pause ends too)
    (S.PENDING, S.RUNNING),
    (S.RESTARTING, S.RUNNING),
    # _act / _crashed / _finish_leg on how a leg ended (also from _recover, whatever the status)
    *((s, t) for s in LIVE for t in (S.SUCCEEDED, S.MOVING, S.PAUSED, S.FAILED)),
    # _move, _wait_pause
    (S.MOVING, S.RESTARTING),
    (S.PAUSED, S.RESTARTING),
    # _cancel, cancel_job and _fail: from any live status
    *((s, S.CANCELLED) for s in LIVE),
    *((s, S.FAILED) for s in LIVE),
}


@pytest.fixture
def book(ledger_location: str) -> Iterator[JobBook]:
    """A job book on each backend (sqlite, PostgreSQL)."""
    with Ledger(ledger_location) as ledger:
        yield JobBook(ledger)


def _job_in(book: JobBook, status: JobStatus) -> str:
    """A new job brought to ``status`` through the gate (PENDING may become anything)."""
    name = f"j{len(book.jobs())}"
    book.create(name, site="KR", store_url="/kr", executor="local", spec={})
    if status is not S.PENDING:
        book.update(name, status=status)
    return name


@pytest.mark.parametrize(("source", "target"), sorted(USED))
def test_every_change_the_code_makes_passes(
    book: JobBook, source: JobStatus, target: JobStatus
) -> None:
    name = _job_in(book, source)
    assert target in JOB_TRANSITIONS[source]
    assert book.update(name, status=target, message="x").status is target
    assert book.get(name).status is target


@pytest.mark.parametrize(
    ("source", "target"),
    [(S.SUCCEEDED, t) for t in JobStatus]
    + [(S.FAILED, t) for t in JobStatus if t is not S.RESTARTING]
    + [(S.CANCELLED, t) for t in JobStatus if t is not S.RESTARTING]
    + [(s, S.PENDING) for s in LIVE if s is not S.PENDING],
)
def test_a_change_out_of_a_finished_status_is_refused(
    book: JobBook, source: JobStatus, target: JobStatus
) -> None:
    name = _job_in(book, source)
    with pytest.raises(LedgerError, match=f"is {source.value}: it cannot become {target.value}"):
        book.update(name, status=target, step=7)
    job = book.get(name)
    assert job.status is source and job.step == 0  # nothing of the refused update was written


def test_fields_other_than_the_status_change_on_a_finished_job(book: JobBook) -> None:
    name = _job_in(book, S.SUCCEEDED)
    assert book.update(name, supervisor_pid=None, message="released").message == "released"
    with pytest.raises(ConfigError, match="unknown job status 'done'"):
        book.update(name, status="done")
    with pytest.raises(ConfigError, match="no job 'nobody'"):
        book.update("nobody", status=S.RUNNING)


def test_a_leg_ends_once(book: JobBook) -> None:
    name = _job_in(book, S.RUNNING)
    book.start_leg(name, 1, site="KR", executor="local", start_step=0)
    with pytest.raises(LedgerError, match="cannot end as running"):
        book.end_leg(name, 1, LegStatus.RUNNING)
    assert book.end_leg(name, 1, LegStatus.MOVED, end_step=5).status is LegStatus.MOVED
    with pytest.raises(LedgerError, match=r"leg 1 of job j0 ended already \(moved\)"):
        book.end_leg(name, 1, LegStatus.CRASHED, end_step=9)
    leg = book.get_leg(name, 1)
    assert leg.status is LegStatus.MOVED and leg.end_step == 5
    with pytest.raises(ConfigError, match="cannot update leg fields"):
        book.update_leg(name, 1, status=LegStatus.RUNNING)
    with pytest.raises(ConfigError, match="has no leg 2"):
        book.end_leg(name, 2, LegStatus.MOVED)
