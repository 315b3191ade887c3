"""Fixtures for the checkpoint tests: deterministic torch, storage edges, an S3 server."""

from __future__ import annotations

import errno
import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from fsspec.implementations.memory import MemoryFileSystem


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


class _EdgeWriter:
    """A file being written to :class:`EdgeMemoryFS`: may block, or run out of space."""

    def __init__(self, inner: Any, fs: EdgeMemoryFS, path: str) -> None:
        self.inner, self.fs, self.path = inner, fs, path

    def write(self, data: bytes | memoryview) -> int:
        if self.fs.gate is not None:
            self.fs.writes_blocked.set()
            assert self.fs.gate.wait(30), "test never opened the gate"
        if self.fs.free_bytes is not None:
            self.fs.free_bytes -= len(data)
            if self.fs.free_bytes < 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.path)
        return int(self.inner.write(data))

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> _EdgeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EdgeMemoryFS(MemoryFileSystem):
    """In-memory fsspec filesystem standing in for a disk that fills up or stalls.

    ``free_bytes``: bytes that may still be written before writes fail with ENOSPC.
    ``gate``: when set to an Event, every write waits for it (``writes_blocked`` is set first).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.free_bytes: int | None = None
        self.gate: threading.Event | None = None
        self.writes_blocked = threading.Event()

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        inner = super()._open(path, mode, **kwargs)
        return _EdgeWriter(inner, self, path) if "w" in mode else inner


@pytest.fixture
def edge_fs() -> tuple[EdgeMemoryFS, str]:
    """A fresh edge filesystem instance and a unique root in it."""
    fs = EdgeMemoryFS(skip_instance_cache=True)
    return fs, f"/ckpt-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (an ephemeral port) for the module's tests."""
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
