"""Faults around a supervised job; each ends with the job finished and its parameters
bit-identical to an uninterrupted run's, and no dead leg shown as running — on both ledger
backends (``ledger_location``: a SQLite file, a PostgreSQL database)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
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
    supervise_cli,
    wait_for,
    write_job,
    write_trace,
)

from caftm.jobs.spec import load_job
from caftm.jobs.supervisor import Supervisor
from caftm.ledger import JobBook, JobRecord, JobStatus, Ledger, LegStatus

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


def _supervise(config: Path) -> JobRecord:
    with Supervisor(load_job(config)) as supervisor:
        return supervisor.run()


class _Background:
    """A supervisor on a thread of the test process."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.result: JobRecord | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = _supervise(self.config)
        except BaseException as e:
            self.error = e

    def join(self, timeout_s: float = 300) -> JobRecord:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the supervisor did not finish"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def _book(config: Path) -> JobBook:
    return JobBook(Ledger(load_job(config).ledger_path))


def _running_leg_pid(book: JobBook, name: str) -> tuple[int, int] | None:
    job = book.find(name)
    if job is None:
        return None
    for leg in book.legs(name):
        if leg.status is LegStatus.RUNNING and leg.pid is not None:
            return leg.leg, leg.pid
    return None


def _finished_cleanly(book: JobBook, name: str) -> None:
    assert all(leg.status is not LegStatus.RUNNING for leg in book.legs(name))
    assert all(r.status != "running" for r in book.ledger.runs())


def test_worker_kill9_mid_step(
    tmp_path: Path, reference: dict[str, torch.Tensor], ledger_location: str
) -> None:
    gate = Gate(tmp_path, 120)
    config = write_job(tmp_path, "k9", policy="carbon-agnostic", job={"env": gate.env},
                       ledger=ledger_location)  # fmt: skip
    book = _book(config)
    background = _Background(config)
    pid = gate.wait_reached()
    os.killpg(pid, signal.SIGKILL)  # in the middle of step 120
    job = background.join()
    assert job.status is JobStatus.SUCCEEDED, job.message
    legs = book.legs("k9")
    assert legs[0].status is LegStatus.CRASHED and "SIGKILL" in legs[0].message
    assert job.crashes == 1 and len(legs) == 2
    assert legs[1].start_step == 100  # from its last checkpoint
    _finished_cleanly(book, "k9")
    assert_identical(final_model(load_job(config), job.site), reference)


def test_worker_kill9_mid_checkpoint(
    tmp_path: Path, reference: dict[str, torch.Tensor], ledger_location: str
) -> None:
    marker = tmp_path / "saving"
    command = [
        sys.executable,
        str(HERE / "held_save_worker.py"),
        "--config",
        str(tmp_path / "kc.yaml"),
        "--checkpoint-every",
        "100",
    ]
    config = write_job(
        tmp_path,
        "kc",
        policy="carbon-agnostic",
        command=command,
        job={"env": {"HOLD_SAVE_FROM": "300", "HOLD_SAVE_MARKER": str(marker)}},
        ledger=ledger_location,
    )
    book = _book(config)
    background = _Background(config)
    wait_for(lambda: marker.exists() and marker.read_text() != "", what="a checkpoint held open")
    running = _running_leg_pid(book, "kc")
    assert running is not None
    step_dir = Path(load_job(config).store_url("KR")) / f"step-{int(marker.read_text()):09d}"
    assert step_dir.is_dir() and not (step_dir / "MANIFEST.json").exists()  # half written
    os.killpg(running[1], signal.SIGKILL)
    # the restart skips the half-written step and resumes from the one before
    job = background.join()
    assert job.status is JobStatus.SUCCEEDED, job.message
    legs = book.legs("kc")
    assert legs[0].status is LegStatus.CRASHED
    assert legs[1].start_step == 200
    _finished_cleanly(book, "kc")
    assert_identical(final_model(load_job(config), job.site), reference)


def test_worker_sigterm_is_a_preemption(
    tmp_path: Path, reference: dict[str, torch.Tensor], ledger_location: str
) -> None:
    gate = Gate(tmp_path, 137)
    config = write_job(tmp_path, "pre", policy="carbon-agnostic", every=1000,
                       job={"env": gate.env}, ledger=ledger_location)  # fmt: skip
    book = _book(config)
    background = _Background(config)
    pid = gate.wait_reached()
    os.killpg(pid, signal.SIGTERM)
    gate.open()
    job = background.join()
    assert job.status is JobStatus.SUCCEEDED, job.message
    legs = book.legs("pre")
    assert legs[0].status is LegStatus.PREEMPTED and job.preemptions == 1
    # no periodic checkpoint before step 1000: the preemption's own checkpoint carried the work
    assert legs[0].end_step == 137
    assert legs[1].start_step == 137
    log = (load_job(config).workdir / "leg-0001" / "worker.log").read_text()
    assert "SIGTERM received: checkpointing" in log and "Traceback" not in log
    _finished_cleanly(book, "pre")
    assert_identical(final_model(load_job(config), job.site), reference)


def test_transfer_interrupted_halfway(
    tmp_path: Path, reference: dict[str, torch.Tensor], ledger_location: str
) -> None:
    # a slow link: the checkpoint (~25 kB) takes seconds to cross it; the supervisor dies midway.
    # FR is always clean and KR never: one move
    write_trace(tmp_path / "trace.csv", sites=("KR", "FR"), period_h=10_000)
    config = write_job(tmp_path, "xfer", sites=("KR", "FR"), job={"bandwidth_mb_per_s": 0.004},
                       ledger=ledger_location)  # fmt: skip
    first = supervise_cli(config)
    book = _book(config)

    def moving() -> bool:
        transfers = book.transfers("xfer") if book.find("xfer") else []
        return bool(transfers) and transfers[-1].status == "started"

    wait_for(moving, what="a transfer in progress")
    wait_for(
        lambda: any(
            (Path(load_job(config).store_url(t.dst_site))).exists() for t in book.transfers("xfer")
        ),
        what="bytes at the destination",
    )
    kill_group(first)
    assert book.get("xfer").status is JobStatus.MOVING
    second = supervise_cli(config)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    assert "resuming the interrupted move" in out
    job = book.get("xfer")
    assert job.status is JobStatus.SUCCEEDED, job.message
    _finished_cleanly(book, "xfer")
    assert_identical(final_model(load_job(config), job.site), reference)


@pytest.mark.parametrize("kind", ["unwritable", "full"])
def test_destination_store_unwritable_or_full(
    tmp_path: Path, reference: dict[str, torch.Tensor], kind: str, ledger_location: str
) -> None:
    bad = tmp_path / "bad"
    if kind == "unwritable":
        bad.write_text("a file where the store's folder should be")
        store = str(bad / "store")
    else:
        bad.mkdir()
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=12k", "tmpfs", str(bad)],
            capture_output=True,
            text=True,
        )
        if mounted.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
        store = str(bad / "store")
    try:
        # FR is always clean, KR never: the job wants to move at once, but FR cannot take it
        write_trace(tmp_path / "trace.csv", sites=("KR", "FR"), period_h=10_000)
        config = write_job(tmp_path, "dst", sites=("KR", "FR"), job={"stores": {"FR": store}},
                           ledger=ledger_location)  # fmt: skip
        job = _supervise(config)
    finally:
        if kind == "full":
            subprocess.run(["umount", str(bad)], check=False)
    book = _book(config)
    assert job.status is JobStatus.SUCCEEDED, job.message
    failed = [t for t in book.transfers("dst") if t.status == "failed"]
    assert failed and failed[0].dst_site == "FR" and store in failed[0].message
    assert {leg.site for leg in book.legs("dst")} == {"KR"}  # stayed at the source
    _finished_cleanly(book, "dst")
    assert_identical(final_model(load_job(config), "KR"), reference)


def test_supervisor_kill9_during_a_leg(
    tmp_path: Path, reference: dict[str, torch.Tensor], ledger_location: str
) -> None:
    gate = Gate(tmp_path, 80)
    config = write_job(
        tmp_path, "sk", policy="carbon-agnostic", job={"env": gate.env}, ledger=ledger_location
    )
    first = supervise_cli(config)
    book = _book(config)
    worker = gate.wait_reached()  # the worker waits at step 80 while its supervisor dies
    os.kill(first.pid, signal.SIGKILL)  # the supervisor only; its worker lives on
    first.wait()
    assert book.get("sk").status is JobStatus.RUNNING
    second = supervise_cli(config)
    output = LineReader(second)
    output.wait_for_line("still runs; watching it")  # adopted, not started again
    gate.open()
    second.wait(timeout=300)
    out = output.text()
    assert second.returncode == 0, out
    job = book.get("sk")
    assert job.status is JobStatus.SUCCEEDED, job.message
    (leg,) = book.legs("sk")  # one leg: the adopted worker finished the job
    assert leg.pid == worker and leg.status is LegStatus.COMPLETED and leg.end_step == STEPS
    _finished_cleanly(book, "sk")
    assert_identical(final_model(load_job(config), job.site), reference)


def test_supervisor_kill9_during_a_pause(
    tmp_path: Path, reference: dict[str, torch.Tensor], ledger_location: str
) -> None:
    # one site, dirty for the first hours of the trace, clean after: the job pauses until then
    # (12 h, 24 s at the job clock's speed; 6 h on PostgreSQL, to keep the suite's time)
    dirty_h = 6 if ledger_location.startswith("postgresql") else 12
    trace = tmp_path / "trace.csv"
    lines = ["time,KR"] + [
        f"2026-03-{1 + h // 24:02d}T{h % 24:02d}:00:00+00:00,{500 if h < dirty_h else 50}"
        for h in range(24 * 5)
    ]
    trace.write_text("\n".join(lines) + "\n")
    config = write_job(
        tmp_path,
        "sp",
        policy="caftm",
        sites=("KR",),
        speed=1800,
        extra={"policy": {"deadline": "2026-03-03T00:00:00Z"}},
        step_clock=False,  # the supervisor waits the pause out on the job's accelerated clock
        ledger=ledger_location,
    )
    first = supervise_cli(config)
    book = _book(config)
    wait_for(
        lambda: book.find("sp") is not None and book.get("sp").status is JobStatus.PAUSED,
        what="the pause",
    )
    kill_group(first)
    assert book.get("sp").status is JobStatus.PAUSED
    second = supervise_cli(config)
    out, _ = second.communicate(timeout=300)
    assert second.returncode == 0, out
    job = book.get("sp")
    assert job.status is JobStatus.SUCCEEDED, job.message
    assert job.pauses >= 1
    _finished_cleanly(book, "sp")
    assert_identical(final_model(load_job(config), "KR"), reference)


def test_a_worker_that_keeps_crashing_fails_the_job_with_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "import sys; print('boom: bad batch'); sys.exit(3)"]
    config = write_job(tmp_path, "crash", command=command, job={"max_restarts": 2})
    run = subprocess.run(
        [sys.executable, "-m", "caftm.cli", "run", "--quiet", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    failed = [line for line in run.stderr.splitlines() if "failed" in line]
    assert len(failed) == 1, run.stderr
    assert "exited with code 3 3 times in a row" in failed[0] and "boom: bad batch" in failed[0]
    assert "Traceback" not in run.stderr
    book = _book(config)
    assert book.get("crash").status is JobStatus.FAILED
    assert [leg.status for leg in book.legs("crash")] == [LegStatus.CRASHED] * 3


def test_cancel_stops_a_running_leg_after_its_checkpoint(tmp_path: Path) -> None:
    gate = Gate(tmp_path, 60)
    config = write_job(tmp_path, "cx", policy="carbon-agnostic", every=1000,
                       job={"env": gate.env})  # fmt: skip
    first = supervise_cli(config)
    book = _book(config)
    gate.wait_reached()
    db = str(load_job(config).ledger_path)
    cancel = subprocess.run(
        [sys.executable, "-m", "caftm.cli", "cancel", "cx", "--db", db],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cancel.returncode == 0, cancel.stderr
    wait_for(lambda: _sigterm_seen(config), what="the supervisor forwarding the cancel")
    gate.open()
    out, _ = first.communicate(timeout=120)
    job = book.get("cx")
    assert job.status is JobStatus.CANCELLED, out
    leg = book.legs("cx")[0]
    assert leg.status is LegStatus.CANCELLED and leg.end_step == 60
    store = Path(load_job(config).store_url("KR"))
    assert (store / f"step-{leg.end_step:09d}" / "MANIFEST.json").exists()
    _finished_cleanly(book, "cx")


def _sigterm_seen(config: Path) -> bool:
    log = load_job(config).workdir / "leg-0001" / "worker.log"
    return log.exists() and "SIGTERM received" in log.read_text()
