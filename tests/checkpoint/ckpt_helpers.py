"""Helpers shared by the checkpoint tests: an independent manifest check, tensor comparison,
and an in-memory store that fills up, stalls or damages what it stores."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import sys
import threading
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.memory import MemoryFileSystem
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable


def choice_rng() -> tuple[random.Random, int]:
    """A random generator for test choices, with its seed (CAFTM_TEST_SEED pins it)."""
    seed = int(os.environ.get("CAFTM_TEST_SEED", random.SystemRandom().randrange(2**31)))
    return random.Random(seed), seed


def tree_checksum(data: bytes) -> str:
    """The manifest's checksum, computed plainly: sha256 of each 64 MiB block, then sha256 of
    the concatenated block digests; a file of at most one block has its plain sha256."""
    block = 64 * 2**20
    if len(data) <= block:
        return hashlib.sha256(data).hexdigest()
    digests = b"".join(
        hashlib.sha256(data[i : i + block]).digest() for i in range(0, len(data), block)
    )
    return hashlib.sha256(digests).hexdigest()


def newest_complete_step(root: Path) -> int | None:
    """The newest step whose manifest lists files that exist with matching size and sha256.

    Written independently of caftm.checkpoint so the tests do not trust the code under test.
    """
    steps = sorted(
        (int(p.name.removeprefix("step-")) for p in root.glob("step-*") if p.is_dir()),
        reverse=True,
    )
    for step in steps:
        directory = root / f"step-{step:09d}"
        try:
            manifest = json.loads((directory / "MANIFEST.json").read_bytes())
            ok = manifest["format_version"] == 2 and manifest["step"] == step
            for entry in manifest["files"]:
                data = (directory / entry["name"]).read_bytes()
                ok = ok and len(data) == entry["size_bytes"]
                ok = ok and tree_checksum(data) == entry["sha256"]
        except (OSError, ValueError, KeyError):
            ok = False
        if ok:
            return step
    return None


def assert_bit_identical(path_a: Path, path_b: Path) -> None:
    a, b = load_file(str(path_a)), load_file(str(path_b))
    assert sorted(a) == sorted(b)
    different = [k for k in a if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ: {different}"


class _EdgeWriter:
    """A file being written to :class:`EdgeMemoryFS`: may block, run out of space, or be damaged."""

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
        if self.path.rsplit("/", 1)[-1] in self.fs.damaged_names and len(data):
            data = bytes([data[0] ^ 0xFF]) + bytes(data[1:])
        return int(self.inner.write(data))

    def close(self) -> None:
        self.inner.close()

    def __enter__(self) -> _EdgeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EdgeMemoryFS(MemoryFileSystem):
    """In-memory fsspec filesystem standing in for a disk that fills up, stalls or damages data.

    ``free_bytes``: bytes that may still be written before writes fail with ENOSPC.
    ``gate``: when set to an Event, every write waits for it (``writes_blocked`` is set first).
    ``damaged_names``: files with these base names are stored with the first byte of every
    written piece flipped (sizes unchanged); other files, manifests say, are stored intact.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.free_bytes: int | None = None
        self.gate: threading.Event | None = None
        self.writes_blocked = threading.Event()
        self.damaged_names: frozenset[str] = frozenset()

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        inner = super()._open(path, mode, **kwargs)
        return _EdgeWriter(inner, self, path) if "w" in mode else inner
