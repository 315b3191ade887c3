"""The job supervisor end to end, with the local executor and real worker processes.

Every job trains the demo CNN (``caftm.demo.worker``) on a SYNTHETIC trace whose clean site
rotates, on an accelerated clock; its final parameters are compared bit for bit with the same
job run unmigrated (policy carbon-agnostic, one leg).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tests.jobs.jobs_support import (
    assert_identical,
    final_model,
    run_job,
    write_job,
)

from caftm.jobs.spec import load_job
from caftm.ledger import JobStatus, LegStatus

pytestmark = pytest.mark.slow


def test_migrates_three_times_across_three_sites_bit_identical(
    tmp_path: Path, reference: dict[str, torch.Tensor], ledger_location: str
) -> None:
    config = write_job(tmp_path, ledger=ledger_location)  # on each backend
    job, book = run_job(config)
    assert job.status is JobStatus.SUCCEEDED, job.message
    legs = book.legs(job.name)
    assert job.moves >= 3, [(leg.site, leg.status) for leg in legs]
    assert len({leg.site for leg in legs}) >= 3
    assert all(leg.status is not LegStatus.RUNNING for leg in legs)
    transfers = [t for t in book.transfers(job.name) if t.status == "done"]
    assert len(transfers) == job.moves
    assert all(t.bytes is not None and t.bytes > 0 and t.seconds is not None for t in transfers)
    assert_identical(final_model(load_job(config), job.site), reference)
    # every leg's runs are closed: none left "running"
    statuses = {r.status for r in book.ledger.runs()}
    assert "running" not in statuses


def test_stores_on_s3(
    tmp_path: Path,
    reference: dict[str, torch.Tensor],
    s3_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3fs = pytest.importorskip("s3fs")
    import fsspec.config

    options = {"endpoint_url": s3_endpoint, "key": "testing", "secret": "testing"}
    for key, value in options.items():  # the workers read these when fsspec starts
        monkeypatch.setenv(f"FSSPEC_S3_{key.upper()}", value)
    monkeypatch.setitem(fsspec.config.conf, "s3", options)  # this process's fsspec started already
    fs = s3fs.S3FileSystem(
        key="testing",
        secret="testing",
        client_kwargs={"endpoint_url": s3_endpoint},
        skip_instance_cache=True,
    )
    fs.mkdir("caftm-sites")
    stores = {"FR": "s3://caftm-sites/fr", "DE": "s3://caftm-sites/de"}  # KR stays local
    config = write_job(tmp_path, "s3job", job={"stores": stores})
    job, book = run_job(config)
    assert job.status is JobStatus.SUCCEEDED, job.message
    sites = [leg.site for leg in book.legs(job.name)]
    assert job.moves >= 3 and {"KR", "FR", "DE"} <= set(sites), sites
    assert fs.ls("caftm-sites/fr") and fs.ls("caftm-sites/de")
    assert_identical(final_model(load_job(config), job.site), reference)


#: the torchrun job: three rotations of the step clock, so three moves (each leg three processes)
DDP_STEPS = 250


def test_torchrun_two_process_worker(tmp_path: Path) -> None:
    pytest.importorskip("torch.distributed.run")
    worker = str(Path(__file__).with_name("ddp_worker.py"))
    config = tmp_path / "ddp.yaml"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        worker,
        "--config",
        str(config),
    ]
    write_job(tmp_path, "ddp", command=command, steps=DDP_STEPS)
    job, book = run_job(config)
    assert job.status is JobStatus.SUCCEEDED, job.message
    assert job.moves >= 3, [(leg.site, leg.status) for leg in book.legs(job.name)]
    reference_config = write_job(
        tmp_path,
        "ddpref",
        policy="carbon-agnostic",
        steps=DDP_STEPS,
        command=[*command[:-1], str(tmp_path / "ddpref.yaml")],
    )
    ref, _ = run_job(reference_config)
    assert ref.status is JobStatus.SUCCEEDED, ref.message
    moved = final_model(load_job(config), job.site, step=DDP_STEPS, rank=0)
    still = final_model(load_job(reference_config), ref.site, step=DDP_STEPS, rank=0)
    assert_identical(moved, still)


def test_rerunning_a_completed_job_trains_nothing(
    tmp_path: Path, reference: dict[str, torch.Tensor]
) -> None:
    config = write_job(tmp_path, "once", policy="carbon-agnostic")
    first, book = run_job(config)
    assert first.status is JobStatus.SUCCEEDED
    out = subprocess.run(
        [sys.executable, "-m", "caftm.cli", "run", "--quiet", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "completed already" in out.stderr and "nothing to train" in out.stderr
    assert len(book.legs("once")) == 1  # no second leg started
    assert_identical(final_model(load_job(config), first.site), reference)
