"""Fixtures for the job tests: an S3 server on 127.0.0.1 and a filesystem that fills up."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFileSystem


class _FillingWriter:
    """A file being written to :class:`FaultyMemoryFS`: fails with ENOSPC once space runs out,
    or stores every piece with its first byte flipped (a store that damages data)."""

    def __init__(self, inner: Any, fs: FaultyMemoryFS, path: str) -> None:
        self.inner, self.fs, self.path = inner, fs, path

    def write(self, data: bytes | memoryview) -> int:
        if self.fs.free_bytes is not None:
            if len(data) > self.fs.free_bytes:
                self.fs.free_bytes = 0
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
            self.fs.free_bytes -= len(data)
        if self.fs.flip_bytes and len(data):
            data = bytes([data[0] ^ 0xFF]) + bytes(data[1:])
        return int(self.inner.write(data))

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> _FillingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FaultyMemoryFS(MemoryFileSystem):
    """In-memory fsspec filesystem standing in for a faulty disk.

    ``free_bytes``: bytes left (None: no limit); a write past it fails with ENOSPC, as a full
    disk's would. ``flip_bytes``: store each written piece with its first byte flipped.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.free_bytes: int | None = None
        self.flip_bytes = False

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        inner = super()._open(path, mode, **kwargs)
        return _FillingWriter(inner, self, path) if "w" in mode else inner


@pytest.fixture
def faulty_fs() -> Iterator[tuple[FaultyMemoryFS, str]]:
    """A fresh faulty filesystem and a unique root in it (removed afterwards)."""
    fs = FaultyMemoryFS(skip_instance_cache=True)
    root = f"/xfer-{uuid.uuid4().hex}"
    yield fs, root
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (an ephemeral port) for the module's tests."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> tuple[Any, dict[str, Any], str]:
    """An s3fs filesystem on the test server, its storage options, and a fresh bucket's URL."""
    s3fs = pytest.importorskip("s3fs")
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": s3_endpoint},
    }
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    bucket = f"xfer-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    return fs, options, f"s3://{bucket}/jobs/job-1"


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Final parameters of the job of ``STEPS`` steps run unmigrated (carbon-agnostic, one leg,
    local executor): what every moved, paused, killed or restarted job must end with, bit for
    bit. Computed once per test session (per xdist worker)."""
    from tests.jobs.jobs_support import final_model, write_job

    from caftm.jobs.spec import load_job
    from caftm.jobs.supervisor import Supervisor
    from caftm.ledger import JobBook, JobStatus, Ledger, LegStatus

    tmp = tmp_path_factory.mktemp("reference")
    config = write_job(tmp, "reference", policy="carbon-agnostic")
    spec = load_job(config)
    supervisor = Supervisor(spec)
    try:
        job = supervisor.run()
    finally:
        supervisor.close()
    assert job.status is JobStatus.SUCCEEDED, job.message
    book = JobBook(Ledger(spec.ledger_path))
    assert [leg.status for leg in book.legs("reference")] == [LegStatus.COMPLETED]
    book.ledger.close()
    return final_model(spec, job.site)
