"""Fixtures for the job tests: an S3 server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (an ephemeral port) for the module's tests."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Final parameters of the job of ``STEPS`` steps run unmigrated (carbon-agnostic, one leg,
    local executor): what every moved, paused, killed or restarted job must end with, bit for
    bit. Computed once per test session (per xdist worker)."""
    from tests.jobs.jobs_support import final_model, run_job, write_job

    from caftm.jobs.spec import load_job
    from caftm.ledger import JobStatus, LegStatus

    tmp = tmp_path_factory.mktemp("reference")
    config = write_job(tmp, "reference", policy="carbon-agnostic")
    job, book = run_job(config)
    assert job.status is JobStatus.SUCCEEDED, job.message
    assert [leg.status for leg in book.legs("reference")] == [LegStatus.COMPLETED]
    book.ledger.close()
    return final_model(load_job(config), job.site)
