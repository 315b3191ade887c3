"""Fixtures for the checkpoint tests: deterministic torch, a faulty store, an S3 server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from ckpt_helpers import EdgeMemoryFS


@pytest.fixture
def deterministic() -> Iterator[None]:
    """Deterministic single-threaded torch for in-process runs; restores the settings after."""
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    yield
    torch.use_deterministic_algorithms(was_deterministic)
    torch.set_num_threads(threads)


@pytest.fixture
def edge_fs() -> Iterator[tuple[EdgeMemoryFS, str]]:
    """A fresh edge filesystem instance and a unique root in it (removed afterwards)."""
    fs = EdgeMemoryFS(skip_instance_cache=True)
    root = f"/ckpt-{uuid.uuid4().hex}"
    yield fs, root
    fs.gate = None
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
    bucket = f"ckpt-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    return fs, options, f"s3://{bucket}/runs/job-1"
