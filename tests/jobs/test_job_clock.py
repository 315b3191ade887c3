"""The job's accelerated clock is honest: a worker's start-up and a move take their wall time
on the job's timeline (1×), not grid hours; only training steps and pauses run accelerated."""

from __future__ import annotations

import itertools
from datetime import timedelta
from pathlib import Path

import pytest
from tests.jobs.jobs_support import START, run_job, write_job

from caftm.ledger import JobStatus
from caftm.ledger.feed import Feed, Scope
from caftm.report.timeline import job_path

pytestmark = pytest.mark.slow

SPEED = 3600.0  # the demo's: one wall second of training is one grid hour
START_DELAY_S = 3.0  # each worker starts this much slower (a busy machine): 3 grid hours at 1×


def test_a_slow_start_and_a_move_are_seconds_on_the_job_clock(tmp_path: Path) -> None:
    # KR dirty, FR clean from the trace's first hour: greedy-cleanest moves KR → FR at once
    config = write_job(
        tmp_path, "honest", policy="greedy-cleanest", sites=("KR", "FR"), steps=120,
        speed=SPEED, step_clock=False, job={"env": {"START_DELAY_S": str(START_DELAY_S)}},
    )  # fmt: skip
    job, book = run_job(config)
    try:
        assert job.status is JobStatus.SUCCEEDED, job.message
        spans = Feed(book.ledger).run_spans(Scope.of_job("honest"))
        moves, _ = job_path(book, "honest")
    finally:
        book.ledger.close()
    assert moves and (moves[0][2], moves[0][3]) == ("KR", "FR"), moves
    # the first leg's start-up (python, torch, the delay) counts at 1×: well under the
    # START_DELAY_S grid hours an always-accelerated clock would have put there
    startup = spans[0].first_event - START
    assert timedelta(seconds=START_DELAY_S) <= startup < timedelta(minutes=10), startup
    # the move (checkpoint, exit, copy, a slow start at FR) too: seconds, not hours
    left, arrived, _, _ = moves[0]
    assert timedelta(seconds=START_DELAY_S) <= arrived - left < timedelta(minutes=10), moves
    # and the job's clock never runs backwards from one leg to the next
    assert all(a.last_event <= b.first_event for a, b in itertools.pairwise(spans))
