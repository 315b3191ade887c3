"""What the supervisor's terminal and ledger say is what happened (issue 18, item 4), in
milliseconds: legs are scripted (:class:`ScriptedExecutor`), time is virtual, the ledger and the
stores are real. The same with real workers: test_truth_workers.py."""

from __future__ import annotations

import dataclasses
import logging
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from tests.jobs.jobs_support import write_job
from tests.jobs.test_outcomes import Job

from caftm.cli.jobs import summary_table, summary_title
from caftm.jobs.cancel import cancel_job
from caftm.jobs.executors.scripted import LegScript, ScriptedExecutor, SupervisorKilled
from caftm.jobs.spec import load_job
from caftm.jobs.supervisor import Supervisor
from caftm.jobs.view import JobView
from caftm.ledger import JobBook, JobStatus, Ledger, LegStatus


@pytest.fixture
def make_job(tmp_path: Path) -> Iterator[Callable[..., Job]]:
    jobs: list[Job] = []

    def make(*, job: dict[str, Any] | None = None) -> Job:
        settings = {"max_restarts": 2, "backoff_s": 1.0, **(job or {})}
        config = write_job(tmp_path, command=["python", "-c", "pass"], job=settings)
        jobs.append(Job(load_job(config)))
        return jobs[-1]

    yield make
    for made in jobs:
        made.ledger.close()


def _notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "caftm.notice"]


def _table_text(book: JobBook, name: str) -> str:
    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(summary_title(book.get(name)))
    console.print(summary_table(book, book.get(name)))
    return console.export_text()


def test_fate_lines_the_worker_reports_reach_the_supervisors_terminal_once(
    make_job: Callable[..., Job], caplog: pytest.LogCaptureFixture
) -> None:
    job = make_job()
    line = "skipping checkpoint: /s/step-000000200/tensors is 0 bytes, manifest says 4096"
    executor = ScriptedExecutor([dataclasses.replace(LegScript.completed(600, polls=40),
                                                     notices=(line,))])  # fmt: skip
    caplog.set_level(logging.INFO, logger="caftm.notice")
    job.run(executor)
    shown = [m for m in _notices(caplog) if "skipping checkpoint" in m]
    assert shown == [f"job job, leg 1 at {job.start}: {line}"]


def test_legs_record_the_step_the_worker_restored_and_the_last_it_reached(
    make_job: Callable[..., Job],
) -> None:
    job = make_job()
    # leg 1 checkpoints 228 and reaches 230 before it crashes; leg 2 finds 228 damaged and
    # restores 200 (as a worker skipping a damaged checkpoint reports)
    crash = dataclasses.replace(LegScript.crashed(step=228), reached=230)
    executor = ScriptedExecutor([crash, dataclasses.replace(LegScript.completed(1500),
                                                            restored=200)])  # fmt: skip
    record = job.run(executor)
    legs = job.book.legs(job.spec.name)
    assert [(leg.start_step, leg.end_step) for leg in legs] == [(0, 230), (200, 1500)]
    assert (record.step, record.crashes) == (1500, 1)
    text = _table_text(job.book, job.spec.name)
    assert "200→1500" in text and "228→" not in text


def test_a_move_line_names_the_step_the_next_leg_resumes_from(
    make_job: Callable[..., Job], caplog: pytest.LogCaptureFixture
) -> None:
    job = make_job()
    executor = ScriptedExecutor(
        [
            LegScript.preempted(160),
            LegScript.crashed(step=400, polls=40),  # a newer checkpoint, then KR goes down
            LegScript.completed(600),
        ]
    )

    def site_down(view: JobView) -> None:
        if view.job.leg == 2:
            executor.down_sites.add(job.start)

    caplog.set_level(logging.INFO, logger="caftm.notice")
    record = job.run(executor, on_update=site_down)
    assert record.status is JobStatus.SUCCEEDED
    third = job.book.legs(job.spec.name)[2]
    assert third.start_step == 400 and third.site != job.start
    [moved] = [m for m in _notices(caplog) if " moved " in m]
    assert f"→ {third.site} with the checkpoint of step 400 " in moved


def test_a_supervisor_stopped_by_a_signal_counts_the_preemption_it_records(
    make_job: Callable[..., Job],
) -> None:
    job = make_job()
    executor = ScriptedExecutor([LegScript.completed(600, polls=10_000)])
    supervisor = Supervisor(job.spec, executor=executor, ledger=job.ledger, clock=job.clock)

    def stop(_view: JobView) -> None:
        supervisor.stopped_by = "SIGINT"

    supervisor.on_update = stop
    record = supervisor.run()
    assert job.leg_statuses() == [LegStatus.PREEMPTED]
    assert record.preemptions == 1
    assert "1 preemptions" in _table_text(job.book, job.spec.name)


def test_a_stop_while_the_worker_starts_is_an_interruption_not_a_crash(
    make_job: Callable[..., Job],
) -> None:
    job = make_job()
    starting = dataclasses.replace(LegScript.completed(600, polls=10_000), dies_on_sigterm=True)
    executor = ScriptedExecutor([starting])
    supervisor = Supervisor(job.spec, executor=executor, ledger=job.ledger, clock=job.clock)

    def stop(_view: JobView) -> None:
        supervisor.stopped_by = "SIGINT"

    supervisor.on_update = stop
    record = supervisor.run()
    assert record.status is JobStatus.RESTARTING
    [leg] = job.book.legs(job.spec.name)
    assert leg.status is LegStatus.INTERRUPTED and leg.exit_code == -signal.SIGTERM
    assert "stopped with the supervisor (SIGINT)" in leg.message
    assert record.crashes == 0


def test_a_cancelled_job_shows_the_step_it_reached(make_job: Callable[..., Job]) -> None:
    job = make_job()
    executor = ScriptedExecutor([LegScript.completed(672, polls=10_000)])
    record = job.run(executor, on_update=lambda view: cancel_job(job.book, view.job.name))
    assert record.status is JobStatus.CANCELLED
    assert (record.step, record.message) == (672, "cancelled after step 672")
    text = _table_text(job.book, job.spec.name)
    assert "cancelled — cancelled" not in text and "job job: cancelled after step 672" in text


def test_cancel_without_a_supervisor_stops_the_leg_through_its_executor(
    make_job: Callable[..., Job],
) -> None:
    job = make_job()
    executor = ScriptedExecutor([LegScript.running(LegScript.completed(600, polls=10_000))])
    with pytest.raises(SupervisorKilled):
        job.run(executor)
    assert job.leg_statuses() == [LegStatus.RUNNING]
    said = cancel_job(job.book, job.spec.name, executor=executor)
    assert executor.signals == [(1, signal.SIGTERM)]  # the worker checkpoints and ends
    [leg] = job.book.legs(job.spec.name)
    assert (leg.status, leg.end_step) == (LegStatus.CANCELLED, 600)
    record = job.book.get(job.spec.name)
    assert (record.status, record.step) == (JobStatus.CANCELLED, 600)
    assert "cancelled after step 600" in said and "stopped through scripted" in said


def test_recovery_goes_on_when_the_dead_leg_was_closed_meanwhile(
    make_job: Callable[..., Job], caplog: pytest.LogCaptureFixture
) -> None:
    """`caftm jobs` marks a dead leg interrupted while a resuming supervisor settles it."""
    job = make_job()

    class Racing(ScriptedExecutor):
        def outcome(self, leg: Any) -> Any:
            if leg.leg == 1 and job.book.get_leg(leg.job, 1).status is LegStatus.RUNNING:
                with Ledger(job.spec.ledger_path) as other:  # another process's connection
                    JobBook(other).end_leg(leg.job, leg.leg, LegStatus.INTERRUPTED,
                                           message="its process died unwatched")  # fmt: skip
            return super().outcome(leg)

    executor = Racing([LegScript.orphaned(LegScript.preempted(100)), LegScript.completed(600)])
    with pytest.raises(SupervisorKilled):
        job.run(executor)
    caplog.set_level(logging.INFO, logger="caftm.notice")
    record = job.run(executor)  # before: LedgerError (the leg gate refuses a second end)
    assert record.status is JobStatus.SUCCEEDED
    assert job.leg_statuses() == [LegStatus.INTERRUPTED, LegStatus.COMPLETED]
    assert any("was closed meanwhile" in m for m in _notices(caplog))


def test_the_executor_clears_what_an_earlier_start_of_a_leg_left(tmp_path: Path) -> None:
    from caftm.jobs.executors import LegRef
    from caftm.jobs.executors.base import OUTCOME_FILE, STATUS_FILE
    from caftm.jobs.executors.local import LocalExecutor

    ref = LegRef("job", 1, "KR", tmp_path / "leg-0001")
    ref.folder.mkdir()
    for name in (OUTCOME_FILE, STATUS_FILE):
        (ref.folder / name).write_text('{"outcome": "completed", "step": 9}')
    executor = LocalExecutor()
    assert executor.outcome(ref) is not None
    executor.prepare(ref)
    assert executor.outcome(ref) is None and executor.status(ref) == {}
