"""Two supervisor processes on one job in a PostgreSQL ledger: one acts, the other stands by;
the first killed with ``kill -9``, the second takes the job over — no leg started twice, final
parameters bit-identical to an uninterrupted run's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.jobs.jobs_support import (
    STEPS,
    Gate,
    LineReader,
    assert_identical,
    final_model,
    kill_group,
    write_job,
)

from caftm.jobs.lease import LEASE_ENV
from caftm.jobs.spec import load_job
from caftm.ledger import JobBook, JobStatus, Ledger, LegStatus

pytestmark = pytest.mark.slow


def _caftm_run(config: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "caftm.cli", "run", "--quiet", *extra, str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, LEASE_ENV: "3"},
    )  # fmt: skip


def test_a_standby_supervisor_takes_over_a_killed_ones_job(
    tmp_path: Path, reference: dict[str, torch.Tensor], postgres_url: str
) -> None:
    gate = Gate(tmp_path, 80)
    config = write_job(tmp_path, "lease", policy="carbon-agnostic", job={"env": gate.env},
                       ledger=postgres_url)  # fmt: skip
    first = _caftm_run(config)
    standby: subprocess.Popen[str] | None = None
    try:
        worker = gate.wait_reached()
        standby = _caftm_run(config, "--standby")
        output = LineReader(standby)
        output.wait_for_line("standing by to take it over")
        # a third supervisor without --standby is refused with one line; nothing started
        third = subprocess.run(
            [sys.executable, "-m", "caftm.cli", "run", "--quiet", str(config)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert third.returncode == 2, third.stdout + third.stderr
        assert "supervised by process" in third.stderr and "Traceback" not in third.stderr
        with Ledger(postgres_url) as ledger:
            book = JobBook(ledger)
            assert book.get("lease").lease_owner.split("/")[1] == str(first.pid)  # type: ignore[union-attr]
            assert len(book.legs("lease")) == 1
        os.kill(first.pid, signal.SIGKILL)  # the supervisor only; its worker lives on
        first.wait()
        output.wait_for_line("still runs; watching it")  # adopted, not started again
        gate.open()
        standby.wait(timeout=300)
        out = output.text()
        assert standby.returncode == 0, out
    finally:
        kill_group(first)
        if standby is not None:
            kill_group(standby)
    with Ledger(postgres_url) as ledger:
        book = JobBook(ledger)
        job = book.get("lease")
        assert job.status is JobStatus.SUCCEEDED, job.message
        (leg,) = book.legs("lease")  # one leg: the adopted worker finished the job
        assert leg.pid == worker and leg.status is LegStatus.COMPLETED and leg.end_step == STEPS
        assert job.lease_owner is None  # released at the end
        assert all(r.status != "running" for r in ledger.runs())
    assert_identical(final_model(load_job(config), job.site), reference)


def test_a_worker_that_cannot_reach_the_ledger_spools_and_its_carbon_comes_home(
    tmp_path: Path, postgres_url: str
) -> None:
    # the worker's connections demand TLS, which the server does not offer: it cannot reach
    # the ledger (the supervisor can) and spools its measurements in its leg's folder
    config = write_job(tmp_path, "spool", policy="carbon-agnostic", ledger=postgres_url,
                       job={"env": {"PGSSLMODE": "require"}})  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "caftm.cli", "run", "--quiet", str(config)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    spec = load_job(config)
    assert (spec.workdir / "leg-0001" / "ledger-spool.jsonl").stat().st_size > 0
    with Ledger(postgres_url) as ledger:
        book = JobBook(ledger)
        job = book.get("spool")
        assert job.status is JobStatus.SUCCEEDED, job.message
        totals = book.totals("spool")
        assert totals.steps == STEPS  # every window once: none lost, none twice
        (run,) = ledger.runs()
        assert run.job == "spool" and run.leg == 1 and run.status == "completed"
        assert run.events > 0
    status = subprocess.run(
        [sys.executable, "-m", "caftm.cli", "status", "spool", "--db", postgres_url],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    assert status.returncode == 0 and "spool" in status.stdout
