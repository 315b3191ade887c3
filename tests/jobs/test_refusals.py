"""Inputs that would silently defeat a job are refused before anything starts, in one line:
another job's checkpoints in its store, a deadline already past."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.jobs.jobs_support import SITES, START, run_job, write_job

from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.clock import FakeClock
from caftm.errors import ConfigError
from caftm.jobs.executors.scripted import LegScript, ScriptedExecutor
from caftm.jobs.spec import JobSpec, load_job
from caftm.jobs.supervisor import Supervisor
from caftm.jobs.validate import check_job
from caftm.ledger import JobBook, JobStatus, Ledger, LegStatus


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "caftm.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, lines
    return lines[0]


def _shared_stores(spec: JobSpec) -> dict[str, dict[str, str]]:
    return {"stores": {site: spec.store_url(site) for site in SITES}}


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    with Ledger(tmp_path / "ledger.sqlite") as opened:
        yield opened


def _supervise(spec: JobSpec, ledger: Ledger, legs: list[LegScript]) -> JobStatus:
    clock = FakeClock(START.timestamp(), speed=3600.0)
    supervisor = Supervisor(spec, executor=ScriptedExecutor(legs), ledger=ledger, clock=clock)
    return supervisor.run().status


def test_a_copied_job_is_refused_another_jobs_store(tmp_path: Path, ledger: Ledger) -> None:
    command = ["python", "-c", "pass"]
    first = load_job(write_job(tmp_path, "first", command=command))
    assert _supervise(first, ledger, [LegScript.completed(400)]) is JobStatus.SUCCEEDED
    copied = load_job(write_job(tmp_path, "copy", command=command, job=_shared_stores(first)))
    with pytest.raises(ConfigError) as refused:
        _supervise(copied, ledger, [LegScript.completed(400)])
    message = str(refused.value)
    assert "\n" not in message
    assert "checkpoints of job 'first'" in message and "not of job 'copy'" in message
    assert "its own store (job.stores)" in message and "adopt_checkpoints_of: first" in message
    assert JobBook(ledger).find("copy") is None  # nothing was started or recorded
    with pytest.raises(ConfigError, match="checkpoints of job 'first'"):
        check_job(copied)  # what `caftm validate` and `caftm run` check first
    adopting = {**_shared_stores(first), "adopt_checkpoints_of": "first"}
    adopter = load_job(write_job(tmp_path, "adopter", command=command, job=adopting))
    check_job(adopter)
    assert _supervise(adopter, ledger, [LegScript.completed(400)]) is JobStatus.SUCCEEDED


def test_a_changed_command_is_another_job(tmp_path: Path, ledger: Ledger) -> None:
    first = load_job(write_job(tmp_path, "same", command=["python", "-c", "pass"]))
    assert _supervise(first, ledger, [LegScript.completed(40)]) is JobStatus.SUCCEEDED
    changed = load_job(write_job(tmp_path, "same", command=["python", "-c", "pass", "x"]))
    with pytest.raises(ConfigError, match="before its command or total_steps changed"):
        check_job(changed)


def test_validate_refuses_a_store_of_another_job(tmp_path: Path) -> None:
    first = load_job(write_job(tmp_path, "first"))
    with CheckpointStore(first.store_url(first.controller.start_site), owner=first.identity) as s:
        s.save(TrainingState(extra={}, rng=False), step=7)
    config = write_job(tmp_path, "copy", job=_shared_stores(first))
    line = _one_error_line(_cli("validate", str(config), cwd=tmp_path))
    assert "checkpoints of job 'first' (newest: step 7)" in line, line


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_deadline_in_the_past_is_refused(tmp_path: Path, command: str) -> None:
    past = {"policy": {"deadline": "2026-02-01T00:00:00Z"}}  # the job's clock starts 2026-03-01
    config = write_job(tmp_path, "late", extra=past)
    line = _one_error_line(_cli(command, str(config), cwd=tmp_path))
    assert "policy.deadline 2026-02-01 00:00 UTC is in the past" in line, line
    assert "2026-03-01 00:00 UTC" in line and "ignoring carbon" in line
    assert not (tmp_path / "work" / "late").exists()  # nothing started


def test_a_deadline_ahead_of_the_jobs_clock_is_accepted(tmp_path: Path) -> None:
    ahead = {"policy": {"deadline": "2026-03-02T00:00:00Z"}}  # past on the wall clock: not here
    check_job(load_job(write_job(tmp_path, "ontime", extra=ahead)))
    real_time = {"clock_speed": None, "clock_start": None}
    late = load_job(write_job(tmp_path, "late", job=real_time, extra=ahead))
    with pytest.raises(ConfigError, match="now is"):
        check_job(late)  # on the wall clock the same deadline is past


@pytest.mark.slow
def test_a_copied_job_yaml_trains_nothing_on_another_jobs_checkpoints(tmp_path: Path) -> None:
    """The reported scenario with real workers: copy a job file, change its name, keep its
    store. The supervisor refuses; a worker started on that store by hand refuses too."""
    original = write_job(tmp_path, "original", policy="carbon-agnostic", steps=40, every=20)
    job, book = run_job(original)
    assert job.status is JobStatus.SUCCEEDED, job.message
    assert [leg.status for leg in book.legs("original")] == [LegStatus.COMPLETED]
    spec = load_job(original)
    copy = write_job(
        tmp_path, "copy", policy="carbon-agnostic", steps=40, every=20, job=_shared_stores(spec)
    )
    with pytest.raises(ConfigError, match="checkpoints of job 'original'"):
        run_job(copy)
    assert book.find("copy") is None
    line = _one_error_line(_cli("run", "--quiet", str(copy), cwd=tmp_path))
    assert "not of job 'copy'" in line
    book.ledger.close()
    copied = load_job(copy)
    env = {
        **os.environ,
        **copied.job.env,
        **copied.identity.to_env(),
        "CAFTM_CHECKPOINT_URL": spec.store_url(spec.controller.start_site),
    }
    worker = subprocess.run(
        copied.job.command, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert worker.returncode != 0
    assert "holds checkpoints of job 'original'" in worker.stderr, worker.stderr[-2000:]
