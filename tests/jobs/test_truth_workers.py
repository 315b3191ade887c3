"""What ``caftm run`` prints and records is what its real workers did (issue 18, item 4): fate
lines a worker prints reach the supervisor's terminal, legs record the step the worker restored,
Ctrl-C exits 130 and one during a worker's start-up is an interruption, and ``caftm cancel
JOBFILE`` without a supervisor stops the leg through its executor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.jobs.jobs_support import (
    Gate,
    book_of,
    caftm_cli,
    damage_a_checkpoint,
    kill_group,
    supervise_cli,
    wait_for,
    write_job,
)

from caftm.jobs.spec import load_job
from caftm.ledger import JobStatus, LegStatus

pytestmark = pytest.mark.slow


def test_a_skipped_checkpoint_and_a_fresh_start_reach_the_run_terminal(tmp_path: Path) -> None:
    config = write_job(tmp_path, "fate", policy="carbon-agnostic", steps=40, every=1000)
    spec = load_job(config)
    damage_a_checkpoint(spec, "KR", 20)
    run = caftm_cli("run", "--quiet", str(config), timeout_s=300)
    assert run.returncode == 0, run.stdout + run.stderr
    skipped = [line for line in run.stderr.splitlines() if "skipping checkpoint" in line]
    assert len(skipped) == 1 and "0 bytes" in skipped[0] and "leg 1 at KR" in skipped[0]
    fresh = [line for line in run.stderr.splitlines() if "starting from step 0 although" in line]
    assert len(fresh) == 1, run.stderr
    book = book_of(config)
    [leg] = book.legs("fate")
    assert (leg.start_step, leg.end_step) == (0, 40)  # not the damaged 20
    status = caftm_cli("status", str(config))  # the job file finds its ledger
    assert status.returncode == 0, status.stderr
    assert "0→40" in status.stdout and "20→" not in status.stdout
    book.ledger.close()


def test_ctrl_c_during_a_workers_start_up_exits_130_and_is_an_interruption(
    tmp_path: Path,
) -> None:
    started = tmp_path / "started"
    worker = [sys.executable, "-c",
              f"import time; open({str(started)!r}, 'w').close(); time.sleep(120)"]  # fmt: skip
    config = write_job(tmp_path, "startup", command=worker, job={"grace_s": 5})
    process = supervise_cli(config)
    try:
        wait_for(started.exists, 120, what="the worker to start")
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's process group
        out, _ = process.communicate(timeout=60)
    finally:
        kill_group(process)
    assert process.returncode == 130, out
    assert "Traceback" not in out
    book = book_of(config)
    [leg] = book.legs("startup")
    assert leg.status is LegStatus.INTERRUPTED, leg
    job = book.get("startup")
    assert (job.status, job.crashes) == (JobStatus.RESTARTING, 0)
    book.ledger.close()


def test_cancel_jobfile_without_a_supervisor_stops_the_local_leg(tmp_path: Path) -> None:
    gate = Gate(tmp_path, 30)
    config = write_job(tmp_path, "orphan", policy="carbon-agnostic", every=1000,
                       job={"env": gate.env})  # fmt: skip
    supervisor = supervise_cli(config)
    try:
        worker_pid = gate.wait_reached()
    finally:
        kill_group(supervisor)  # kill -9: the worker (its own session) trains on
    book = book_of(config)
    assert [leg.status for leg in book.legs("orphan")] == [LegStatus.RUNNING]
    cancel = subprocess.Popen(
        [sys.executable, "-m", "caftm.cli", "cancel", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_for(lambda: "SIGTERM received" in (load_job(config).workdir / "leg-0001" /
             "worker.log").read_text(), 60, what="the worker to get SIGTERM")  # fmt: skip
    gate.open()
    out, _ = cancel.communicate(timeout=120)
    assert cancel.returncode == 0, out
    assert "stopped through local" in out and "after step 30" in out
    [leg] = book.legs("orphan")
    assert (leg.status, leg.end_step) == (LegStatus.CANCELLED, 30)
    job = book.get("orphan")
    assert (job.status, job.step) == (JobStatus.CANCELLED, 30)
    wait_for(lambda: not _alive(worker_pid), 30, what="the worker to end")
    store = Path(load_job(config).store_url("KR"))
    assert (store / "step-000000030" / "MANIFEST.json").exists()
    # the worker's line names the step of the checkpoint it writes (the one in progress)
    log = (load_job(config).workdir / "leg-0001" / "worker.log").read_text()
    assert "SIGTERM received: checkpointing after step 30 " in log, log
    book.ledger.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text()[:64]


def test_ctrl_c_while_training_exits_130_and_counts_the_preemption(tmp_path: Path) -> None:
    gate = Gate(tmp_path, 30)
    config = write_job(tmp_path, "ctrlc", policy="carbon-agnostic", every=1000,
                       job={"env": gate.env})  # fmt: skip
    process = supervise_cli(config)
    try:
        gate.wait_reached()
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's process group
        wait_for(lambda: "SIGTERM received" in (load_job(config).workdir / "leg-0001" /
                 "worker.log").read_text(), 60, what="the worker to get SIGTERM")  # fmt: skip
        gate.open()
        out, _ = process.communicate(timeout=120)
    finally:
        kill_group(process)
    assert process.returncode == 130, out
    assert "Traceback" not in out
    book = book_of(config)
    [leg] = book.legs("ctrlc")
    assert (leg.status, leg.end_step) == (LegStatus.PREEMPTED, 30), leg
    job = book.get("ctrlc")
    assert (job.status, job.step, job.preemptions, job.crashes) == (
        JobStatus.RESTARTING, 30, 1, 0)  # fmt: skip
    book.ledger.close()
    status = caftm_cli("status", str(config))
    assert status.returncode == 0, status.stderr
    assert "1 preemptions" in status.stdout and "0 preemptions" not in status.stdout
