"""Moves in seconds: the last checkpoint written straight into the destination's store, the
destination's worker started while it is written (a standby) and let go once it is there, and
a standby stopped when its move is abandoned. Each job ends bit-identical to an unmoved run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from tests.jobs.jobs_support import (
    assert_identical,
    final_model,
    run_job,
    wait_for,
    write_job,
    write_trace,
)

from caftm.checkpoint import CheckpointStore, latest_complete_step
from caftm.jobs import protocol
from caftm.jobs.spec import load_job
from caftm.jobs.standby import EXIT_STANDBY_LEFT, STANDBY_FILE
from caftm.jobs.supervisor import Supervisor
from caftm.ledger import JobStatus, LegStatus

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


def _standby_processes(folder: Path) -> list[int]:
    """Pids of live processes started as a standby of a job under ``folder``."""
    marker = f"{protocol.ENV_STANDBY_FILE}={folder}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                environ = fh.read()
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state != b"Z" and any(v.startswith(marker) for v in environ.split(b"\0")):
            found.append(int(entry))
    return found


def test_a_move_writes_straight_into_the_destination_and_lets_its_standby_go(
    tmp_path: Path, reference: dict[str, torch.Tensor]
) -> None:
    # FR is always clean and KR never: one move, at once
    write_trace(tmp_path / "trace.csv", sites=("KR", "FR"), period_h=10_000)
    config = write_job(tmp_path, "direct", sites=("KR", "FR"))
    job, book = run_job(config)
    spec = load_job(config)
    try:
        assert job.status is JobStatus.SUCCEEDED, job.message
        assert job.moves == 1 and job.site == "FR"
        (transfer,) = book.transfers("direct")
        assert transfer.status == "done" and transfer.message == "written by the worker"
        assert transfer.bytes and transfer.bytes > 0
        moved = transfer.step
        assert moved is not None
        # one pass: the moved step was written at FR only, never at KR
        assert (latest_complete_step(spec.store_url("KR")) or -1) < moved
        legs = book.legs("direct")
        assert [leg.site for leg in legs] == ["KR", "FR"]
        assert legs[1].start_step == moved and legs[0].ended_at is not None
        # FR's worker was started while KR's still ran, and let go
        standby = json.loads((spec.workdir / "leg-0002" / STANDBY_FILE).read_text())
        assert standby["go"] is True and standby["site"] == "FR"
        assert standby["since_unix_s"] < legs[0].ended_at.timestamp()
    finally:
        book.ledger.close()
    assert_identical(final_model(spec, "FR"), reference)


def test_a_move_abandoned_after_its_standby_started_leaves_no_worker_running(
    tmp_path: Path, reference: dict[str, torch.Tensor]
) -> None:
    bad = tmp_path / "bad"
    bad.write_text("a file where FR's store folder should be")
    release = tmp_path / "release"
    command = [sys.executable, str(HERE / "held_save_worker.py"), "--config",
               str(tmp_path / "held.yaml"), "--checkpoint-every", "50"]  # fmt: skip
    write_trace(tmp_path / "trace.csv", sites=("KR", "FR"), period_h=10_000)
    config = write_job(
        tmp_path, "held", sites=("KR", "FR"), command=command,
        job={"stores": {"FR": str(bad / "store")},
             "env": {"HOLD_SAVE_FROM": "0", "HOLD_SAVE_RELEASE": str(release)}},
    )  # fmt: skip
    workdir = load_job(config).workdir
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(run_job(config)), daemon=True)
    thread.start()
    # the move's checkpoint is held open: FR's worker stands by meanwhile
    wait_for(lambda: bool(_standby_processes(workdir)), timeout_s=180, what="a standby worker")
    release.write_text("go", encoding="utf-8")
    thread.join(300)
    assert not thread.is_alive() and outcome, "the supervisor did not finish"
    job, book = outcome[0]  # type: ignore[misc]
    try:
        assert job.status is JobStatus.SUCCEEDED, job.message
        (failed,) = [t for t in book.transfers("held") if t.status == "failed"]
        assert failed.dst_site == "FR" and str(bad) in failed.message
        assert {leg.site for leg in book.legs("held")} == {"KR"}  # stayed at the source
        assert all(leg.status is not LegStatus.RUNNING for leg in book.legs("held"))
    finally:
        book.ledger.close()
    wait_for(lambda: not _standby_processes(workdir), timeout_s=10, what="no standby left")
    assert_identical(final_model(load_job(config), "KR"), reference)


def test_a_standby_waits_for_its_go_then_refuses_a_corrupt_checkpoint(tmp_path: Path) -> None:
    config = write_job(tmp_path, "sb", policy="carbon-agnostic", steps=60, every=20)
    job, book = run_job(config)  # checkpoints of steps 20, 40 and 60 at KR
    book.ledger.close()
    assert job.status is JobStatus.SUCCEEDED, job.message
    spec = load_job(config)
    store_url = spec.store_url("KR")
    tensors = Path(store_url) / "step-000000060" / "tensors.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-10] ^= 0xFF  # the newest checkpoint is corrupt; 40 is intact
    tensors.write_bytes(bytes(data))

    supervisor = Supervisor(spec)
    try:
        folder = tmp_path / "standby-leg"
        folder.mkdir()
        env = supervisor.legs.worker_env(9, "KR", store_url, folder)
    finally:
        supervisor.close()
    standby_file = folder / STANDBY_FILE
    env.update({protocol.ENV_STANDBY_FILE: str(standby_file), protocol.ENV_STANDBY_TOKEN: "t1"})
    standby_file.write_text(json.dumps({"token": "t1", "go": False}))
    log = folder / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen(list(spec.job.command), env=env, cwd=spec.cwd, stdout=out,
                                  stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:  # imports done, model built: it waits, restores nothing
            os.utime(standby_file)
            assert worker.poll() is None, log.read_text()
            time.sleep(0.2)
        assert not (folder / "status.json").exists()
        assert CheckpointStore(store_url).steps_present() == [20, 40, 60]  # untouched
        standby_file.write_text(json.dumps({"token": "t1", "go": True}))
        assert worker.wait(120) == 0, log.read_text()
    finally:
        worker.kill()
        worker.wait()
    text = log.read_text()
    assert "skipping checkpoint" in text and "step-000000060/tensors.safetensors sha256" in text
    assert "starting from step 0" not in text  # it restored step 40
    outcome = protocol.read_outcome(folder / "outcome.json")
    assert outcome is not None and outcome.step == 60  # resumed at 40, trained 20 steps again


@pytest.mark.parametrize("how", ["removed", "another token", "stale"])
def test_a_standby_leaves_without_training_when_its_move_is_off(tmp_path: Path, how: str) -> None:
    from caftm.jobs.standby import wait_for_go

    path = tmp_path / STANDBY_FILE
    path.write_text(json.dumps({"token": "mine", "go": False}))
    env = {protocol.ENV_STANDBY_FILE: str(path), protocol.ENV_STANDBY_TOKEN: "mine"}
    if how == "removed":
        path.unlink()
    elif how == "another token":
        path.write_text(json.dumps({"token": "theirs", "go": True}))
    else:
        old = time.time() - 60
        os.utime(path, (old, old))
    with pytest.raises(SystemExit) as left:
        wait_for_go(env, stale_s=30)
    assert left.value.code == EXIT_STANDBY_LEFT
    assert wait_for_go({}) is None  # no standby: nothing to wait for
    path.write_text(json.dumps({"token": "mine", "go": True}))
    assert wait_for_go(env) == {"token": "mine", "go": True}


def test_moves_need_no_standby_or_direct_write(
    tmp_path: Path, reference: dict[str, torch.Tensor]
) -> None:
    write_trace(tmp_path / "trace.csv", sites=("KR", "FR"), period_h=10_000)
    config = write_job(tmp_path, "plain", sites=("KR", "FR"),
                       job={"direct_moves": False, "standby_workers": False})  # fmt: skip
    job, book = run_job(config)
    spec = load_job(config)
    try:
        assert job.status is JobStatus.SUCCEEDED and job.moves == 1, job.message
        (transfer,) = book.transfers("plain")
        assert transfer.message == "" and transfer.bytes and transfer.bytes > 0  # copied
        assert not (spec.workdir / "leg-0002" / STANDBY_FILE).exists()
    finally:
        book.ledger.close()
    assert_identical(final_model(spec, "FR"), reference)
