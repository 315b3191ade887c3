"""The supervisor's outcome table, recovery and cancel, in milliseconds: legs are scripted
(:class:`ScriptedExecutor`), time is virtual (:class:`FakeClock`), the ledger is a real SQLite
file and checkpoint stores are real folders. Real processes: test_faults.py, test_supervisor.py."""

from __future__ import annotations

import dataclasses
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.jobs.jobs_support import START, write_job

from caftm.checkpoint import CheckpointStore, TrainingState, transfer_latest
from caftm.clock import FakeClock
from caftm.jobs import protocol
from caftm.jobs.cancel import cancel_job
from caftm.jobs.executors.local import LocalExecutor
from caftm.jobs.executors.scripted import LegScript, ScriptedExecutor, SupervisorKilled
from caftm.jobs.spec import JobSpec, load_job
from caftm.jobs.supervisor import Supervisor
from caftm.jobs.view import JobView
from caftm.ledger import JobBook, JobRecord, JobStatus, Ledger, LegStatus
from caftm.ledger.jobs import TransferRecord

#: virtual seconds per slept second: a pause's quarter-second waits are 15 virtual minutes
SPEED = 3600.0
T0 = START.timestamp()
HOUR = 3600.0


class Job:
    """One job's spec, ledger, book and fake clock; :meth:`run` supervises it."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.ledger = Ledger(spec.ledger_path)
        self.book = JobBook(self.ledger)
        self.clock = FakeClock(T0, speed=SPEED)
        self.start = spec.controller.start_site  # KR: dirty first (the trace rotates FR, DE, KR)

    def run(
        self, executor: ScriptedExecutor, on_update: Callable[[JobView], None] | None = None
    ) -> JobRecord:
        supervisor = Supervisor(
            self.spec, executor=executor, ledger=self.ledger, on_update=on_update,
            clock=self.clock,
        )  # fmt: skip
        return supervisor.run()

    def leg_statuses(self) -> list[LegStatus]:
        return [leg.status for leg in self.book.legs(self.spec.name)]

    def steps_at(self, site: str) -> list[int]:
        with CheckpointStore(self.spec.store_url(site), keep_last=None) as store:
            return [info.step for info in store.checkpoints()]


@pytest.fixture
def make_job(tmp_path: Path) -> Iterator[Callable[..., Job]]:
    jobs: list[Job] = []

    def make(*, job: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Job:
        settings = {"max_restarts": 2, "backoff_s": 1.0, **(job or {})}
        config = write_job(tmp_path, command=["python", "-c", "pass"], job=settings, extra=extra)
        jobs.append(Job(load_job(config)))
        return jobs[-1]

    yield make
    for made in jobs:
        made.ledger.close()


def _sites(executor: ScriptedExecutor) -> list[str]:
    return [launch.site for launch in executor.starts]


# -- the outcome table ---------------------------------------------------------------------------
def test_completed_marks_the_job_succeeded(make_job: Callable[..., Job]) -> None:
    job = make_job()
    executor = ScriptedExecutor([LegScript.completed(600)])
    record = job.run(executor)
    assert (record.status, record.step, record.site) == (JobStatus.SUCCEEDED, 600, job.start)
    assert job.leg_statuses() == [LegStatus.COMPLETED]
    assert _sites(executor) == [job.start]
    assert job.clock.slept_s == []  # nothing waited


def test_a_silent_worker_exiting_0_counts_as_completed(make_job: Callable[..., Job]) -> None:
    job = make_job()
    record = job.run(ScriptedExecutor([LegScript(None, 40, exit_code=0)]))
    assert (record.status, record.step) == (JobStatus.SUCCEEDED, 40)


def test_moved_transfers_the_checkpoint_and_continues_at_the_destination(
    make_job: Callable[..., Job],
) -> None:
    job = make_job()
    executor = ScriptedExecutor([LegScript.moved("FR", 100), LegScript.completed(600)])
    record = job.run(executor)
    assert (record.status, record.site, record.moves) == (JobStatus.SUCCEEDED, "FR", 1)
    assert _sites(executor) == [job.start, "FR"]
    assert job.leg_statuses() == [LegStatus.MOVED, LegStatus.COMPLETED]
    assert 100 in job.steps_at("FR")  # the bytes arrived (verified by the transfer)
    assert job.book.legs(job.spec.name)[1].start_step == 100
    [transfer] = job.book.transfers(job.spec.name)
    assert (transfer.src_site, transfer.dst_site, transfer.status) == (job.start, "FR", "done")
    assert executor.starts[1].env[protocol.ENV_CHECKPOINT_URL] == job.spec.store_url("FR")


@pytest.mark.parametrize("failure", ["site down", "store unwritable"])
def test_moved_to_a_failing_destination_stays_with_that_site_excluded(
    make_job: Callable[..., Job], failure: str
) -> None:
    job = make_job()
    executor = ScriptedExecutor([LegScript.moved("DE", 100), LegScript.completed(600)])
    if failure == "site down":
        executor.down_sites.add("DE")
    else:  # a file where DE's store folder should be
        blocker = Path(job.spec.store_url("DE")).parent
        blocker.parent.mkdir(parents=True, exist_ok=True)
        blocker.write_text("not a folder")
    record = job.run(executor)
    assert (record.status, record.site, record.moves) == (JobStatus.SUCCEEDED, job.start, 0)
    assert _sites(executor) == [job.start, job.start]
    assert executor.starts[1].env[protocol.ENV_EXCLUDE_SITES] == "DE"
    [transfer] = job.book.transfers(job.spec.name)
    assert (transfer.dst_site, transfer.status) == ("DE", "failed")


def test_paused_waits_on_the_clock_then_starts_here(make_job: Callable[..., Job]) -> None:
    job = make_job()
    until_s = T0 + 2 * HOUR  # KR stays dirty until hour 8: no early resume
    executor = ScriptedExecutor([LegScript.paused(until_s, 100), LegScript.completed(600)])
    record = job.run(executor)
    assert (record.status, record.pauses) == (JobStatus.SUCCEEDED, 1)
    assert _sites(executor) == [job.start, job.start]
    assert job.leg_statuses() == [LegStatus.PAUSED, LegStatus.COMPLETED]
    assert until_s <= job.clock() < until_s + 0.25 * SPEED  # the second leg ended at once


def test_paused_resumes_early_once_the_site_is_clean_again(make_job: Callable[..., Job]) -> None:
    job = make_job()  # absolute θ = 400 g; KR reads 50 g from hour 8 (re-checked every 600 s)
    assert job.spec.controller.threshold.mode.value == "absolute"
    until_s = T0 + 20 * HOUR
    executor = ScriptedExecutor([LegScript.paused(until_s, 100), LegScript.completed(600)])
    record = job.run(executor)
    assert record.status is JobStatus.SUCCEEDED
    assert T0 + 8 * HOUR <= job.clock() < T0 + 9 * HOUR  # resumed at hour 8, not 20


def test_preempted_restarts_here_at_once(make_job: Callable[..., Job]) -> None:
    job = make_job()
    executor = ScriptedExecutor([LegScript.preempted(100), LegScript.completed(600)])
    record = job.run(executor)
    assert (record.status, record.preemptions) == (JobStatus.SUCCEEDED, 1)
    assert _sites(executor) == [job.start, job.start]
    assert job.leg_statuses() == [LegStatus.PREEMPTED, LegStatus.COMPLETED]
    assert job.clock.slept_s == []


def test_crashes_back_off_doubling_and_fail_after_max_restarts_without_progress(
    make_job: Callable[..., Job],
) -> None:
    job = make_job()  # max_restarts 2, backoff 1 s
    executor = ScriptedExecutor([LegScript.crashed(3)] * 4)
    record = job.run(executor)
    assert record.status is JobStatus.FAILED
    assert "exited with code 3 3 times in a row without progress" in record.message
    assert len(executor.starts) == 3
    assert job.clock.slept_s == [1.0, 2.0]
    assert job.leg_statuses() == [LegStatus.CRASHED] * 3


def test_progress_resets_the_crash_streak(make_job: Callable[..., Job]) -> None:
    job = make_job()
    scripts = [
        LegScript.crashed(),
        LegScript.crashed(),
        LegScript.crashed(step=100),  # it checkpointed before it crashed: progress
        LegScript.crashed(),
        LegScript.completed(600),
    ]
    record = job.run(ScriptedExecutor(scripts))
    assert (record.status, record.crashes) == (JobStatus.SUCCEEDED, 4)
    assert job.clock.slept_s == [1.0, 2.0, 1.0, 2.0]


def test_a_worker_that_cannot_be_started_fails_the_job(make_job: Callable[..., Job]) -> None:
    job = make_job()
    record = job.run(ScriptedExecutor([]))
    assert record.status is JobStatus.FAILED
    assert "no script left for leg 1" in record.message
    assert job.leg_statuses() == [LegStatus.CRASHED]


# -- a site that cannot run a worker --------------------------------------------------------------
def test_fails_over_to_the_cleanest_site_that_can_run_a_worker(
    make_job: Callable[..., Job],
) -> None:
    job = make_job()  # at hour 0 FR is clean, KR and DE dirty
    executor = ScriptedExecutor([LegScript.completed(600)], down_sites={job.start})
    record = job.run(executor)
    assert (record.status, record.site) == (JobStatus.SUCCEEDED, "FR")
    assert _sites(executor) == ["FR"]
    [transfer] = job.book.transfers(job.spec.name)
    assert (transfer.src_site, transfer.dst_site, transfer.status) == (job.start, "FR", "done")


def test_fails_when_no_site_can_run_a_worker(make_job: Callable[..., Job]) -> None:
    job = make_job()
    executor = ScriptedExecutor([LegScript.completed(600)], down_sites={"KR", "FR", "DE"})
    record = job.run(executor)
    assert record.status is JobStatus.FAILED
    assert "no other site can run it" in record.message
    assert executor.starts == []


# -- cancel and stop -------------------------------------------------------------------------------
def test_cancel_through_the_ledger_stops_the_leg_after_its_checkpoint(
    make_job: Callable[..., Job],
) -> None:
    job = make_job()
    executor = ScriptedExecutor([LegScript.completed(600, polls=10_000)])
    answers: list[str] = []

    def cancel(view: JobView) -> None:
        if not answers:
            answers.append(cancel_job(job.book, view.job.name))

    record = job.run(executor, on_update=cancel)
    assert answers[0].startswith("cancel requested; the supervisor")
    assert (record.status, record.cancel_requested) == (JobStatus.CANCELLED, False)
    assert executor.signals == [(1, signal.SIGTERM)]
    [leg] = job.book.legs(job.spec.name)
    assert (leg.status, leg.end_step) == (LegStatus.CANCELLED, 600)


def test_cancel_during_a_pause(make_job: Callable[..., Job]) -> None:
    job = make_job()
    executor = ScriptedExecutor([LegScript.paused(T0 + 6 * HOUR, 100)])
    record = job.run(executor, on_update=lambda view: cancel_job(job.book, view.job.name))
    assert record.status is JobStatus.CANCELLED
    assert len(executor.starts) == 1
    assert job.clock() < T0 + HOUR


def test_a_worker_ignoring_sigterm_is_killed_after_the_grace_period(
    make_job: Callable[..., Job],
) -> None:
    job = make_job(job={"grace_s": 2})
    stubborn = dataclasses.replace(LegScript.completed(600, polls=10_000), stops_on_sigterm=False)
    executor = ScriptedExecutor([stubborn])
    record = job.run(executor, on_update=lambda view: cancel_job(job.book, view.job.name))
    assert record.status is JobStatus.CANCELLED
    assert executor.signals[0] == (1, signal.SIGTERM)
    assert executor.signals[-1] == (1, signal.SIGKILL)
    [leg] = job.book.legs(job.spec.name)
    assert leg.exit_code == -signal.SIGKILL
    assert 2 < job.clock.monotonic() < 3  # the grace period, in slept seconds


def test_a_stopped_supervisor_leaves_the_job_to_resume(make_job: Callable[..., Job]) -> None:
    job = make_job()
    executor = ScriptedExecutor([LegScript.completed(600, polls=10_000)])
    supervisor = Supervisor(job.spec, executor=executor, ledger=job.ledger, clock=job.clock)

    def stop(_view: JobView) -> None:
        supervisor.stopped_by = "SIGTERM"

    supervisor.on_update = stop
    record = supervisor.run()
    assert record.status is JobStatus.RESTARTING
    assert executor.signals == [(1, signal.SIGTERM)]
    [leg] = job.book.legs(job.spec.name)
    assert (leg.status, leg.end_step) == (LegStatus.PREEMPTED, 600)
    assert "stopped with the supervisor" in leg.message


# -- a restarted supervisor ------------------------------------------------------------------------
def test_a_restarted_supervisor_adopts_a_live_worker(make_job: Callable[..., Job]) -> None:
    job = make_job()
    executor = ScriptedExecutor(
        [LegScript.running(LegScript.completed(600)), LegScript.completed(0)]
    )
    with pytest.raises(SupervisorKilled):
        job.run(executor)
    assert job.leg_statuses() == [LegStatus.RUNNING]
    record = job.run(executor)  # a new supervisor, the same workers
    assert executor.adoptions == [1]
    assert len(executor.starts) == 1  # no second worker beside the live one
    assert (record.status, record.step) == (JobStatus.SUCCEEDED, 600)
    assert job.leg_statuses() == [LegStatus.COMPLETED]


def test_a_dead_workers_leg_is_marked_interrupted(make_job: Callable[..., Job]) -> None:
    job = make_job()
    executor = ScriptedExecutor(
        [LegScript.orphaned(LegScript.crashed(-9)), LegScript.completed(600)]
    )
    with pytest.raises(SupervisorKilled):
        job.run(executor)
    record = job.run(executor)
    assert executor.adoptions == []
    assert record.status is JobStatus.SUCCEEDED
    assert job.leg_statuses() == [LegStatus.INTERRUPTED, LegStatus.COMPLETED]


def test_what_a_dead_worker_said_still_counts(make_job: Callable[..., Job]) -> None:
    job = make_job()
    executor = ScriptedExecutor(
        [LegScript.orphaned(LegScript.preempted(100)), LegScript.completed(600)]
    )
    with pytest.raises(SupervisorKilled):
        job.run(executor)
    record = job.run(executor)
    assert (record.status, record.preemptions) == (JobStatus.SUCCEEDED, 1)
    assert job.leg_statuses() == [LegStatus.PREEMPTED, LegStatus.COMPLETED]


def test_a_restarted_supervisor_adopts_a_live_local_worker(make_job: Callable[..., Job]) -> None:
    """The same with real processes: the first supervisor dies while its worker runs on."""
    outcome = '{"outcome": "completed", "step": 7}'
    code = (
        "import os, time; time.sleep(1.5); "
        f"open(os.environ['CAFTM_OUTCOME_FILE'], 'w').write({outcome!r})"
    )
    job = make_job(job={"command": [sys.executable, "-c", code]})
    spec = job.spec

    def die(_view: JobView) -> None:
        raise SupervisorKilled("kill -9")

    first = Supervisor(spec, executor=LocalExecutor(), ledger=job.ledger, on_update=die)
    with pytest.raises(SupervisorKilled):
        first.run()
    [leg] = job.book.legs(spec.name)
    assert leg.status is LegStatus.RUNNING and leg.pid is not None
    record = Supervisor(spec, executor=LocalExecutor(), ledger=job.ledger).run()
    assert (record.status, record.step) == (JobStatus.SUCCEEDED, 7)
    assert job.leg_statuses() == [LegStatus.COMPLETED]  # watched, not started again


def _leave_a_move(job: Job, transfer_status: str) -> None:
    """The ledger and stores as a supervisor killed during a move from KR to FR leaves them:
    leg 1 moved at step 100, the job MOVING at KR, the transfer recorded ``transfer_status``."""
    spec, book = job.spec, job.book
    src, dst = job.start, "FR"
    book.create(spec.name, site=src, store_url=spec.store_url(src), executor="scripted",
                spec={**spec.to_dict(), "clock": None})  # fmt: skip
    book.start_leg(spec.name, 1, site=src, executor="scripted", start_step=None)
    book.update(spec.name, leg=1, status=JobStatus.RUNNING)
    with CheckpointStore(spec.store_url(src), keep_last=None) as store:
        store.save(TrainingState(extra={"leg": 1}, rng=False), step=100)
    book.end_leg(spec.name, 1, LegStatus.MOVED, exit_code=0, end_step=100)
    book.update(spec.name, status=JobStatus.MOVING, step=100)
    record = TransferRecord(spec.name, 1, datetime.now(UTC), src, dst, spec.store_url(src),
                            spec.store_url(dst), 100, None, None, "started", "")  # fmt: skip
    transfer_id = book.record_transfer(record)
    if transfer_status == "done":  # the bytes arrived, the job was not updated yet
        transfer_latest(spec.store_url(src), spec.store_url(dst))
        book.finish_transfer(transfer_id, status="done", size_bytes=1, seconds=0.1, step=100)


def test_a_move_recorded_done_continues_at_the_destination_without_a_new_transfer(
    make_job: Callable[..., Job],
) -> None:
    job = make_job()
    _leave_a_move(job, "done")
    executor = ScriptedExecutor([LegScript.completed(600)])
    record = job.run(executor)
    assert (record.status, record.site) == (JobStatus.SUCCEEDED, "FR")
    assert _sites(executor) == ["FR"]
    assert [t.status for t in job.book.transfers(job.spec.name)] == ["done"]
    assert job.book.legs(job.spec.name)[1].start_step == 100


def test_a_move_interrupted_during_its_transfer_is_resumed(make_job: Callable[..., Job]) -> None:
    job = make_job()
    _leave_a_move(job, "started")
    executor = ScriptedExecutor([LegScript.completed(600)])
    record = job.run(executor)
    assert (record.status, record.site, record.moves) == (JobStatus.SUCCEEDED, "FR", 1)
    assert _sites(executor) == ["FR"]
    assert [t.status for t in job.book.transfers(job.spec.name)] == ["started", "done"]
    assert 100 in job.steps_at("FR")


def test_fake_clock_sleeps_advance_virtual_time_at_its_speed() -> None:
    clock = FakeClock(T0, speed=60)
    clock.sleep(2)
    clock.advance(30)
    assert (clock(), clock.monotonic(), clock.slept_s) == (T0 + 150, 2.5, [2])
    assert datetime.fromtimestamp(clock(), UTC) == START + timedelta(seconds=150)
