"""Checksums computed in the pass that writes or copies the bytes equal hashlib over the file.

The scheme (manifest ``checksum: sha256-tree-64MiB``): the plain sha256 of a file of one block
or less; else the sha256 of the concatenated sha256 digests of its 64 MiB blocks. Computed here
with hashlib alone, independently of caftm's own hasher.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import fsspec
import pytest
import torch

from caftm.checkpoint import CheckpointStore, TrainingState, transfer_latest
from caftm.checkpoint._backend import FsspecBackend, LocalBackend
from caftm.checkpoint.checksum import TreeHasher
from caftm.checkpoint.manifest import TENSORS_NAME

BLOCK = 64 * 2**20


def hashlib_tree(data: bytes) -> str:
    if len(data) <= BLOCK:
        return hashlib.sha256(data).hexdigest()
    blocks = (data[i : i + BLOCK] for i in range(0, len(data), BLOCK))
    return hashlib.sha256(b"".join(hashlib.sha256(b).digest() for b in blocks)).hexdigest()


def big_state(floats: int = 17_000_000) -> TrainingState:
    """A model of ``floats`` float32 parameters: its tensors file spans two blocks."""
    values = torch.rand(floats, generator=torch.Generator().manual_seed(7))
    model = torch.nn.ParameterList([torch.nn.Parameter(values, requires_grad=False)])
    return TrainingState(model=model, rng=False)


def manifest_entry(store_url: str, step: int) -> tuple[str, int]:
    info = CheckpointStore(store_url, keep_last=None).checkpoints()[-1]
    assert info.step == step
    entry = info.manifest.file(TENSORS_NAME)
    return entry.sha256, entry.size_bytes


@pytest.mark.parametrize(
    "size", [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + 4099], ids=lambda n: f"{n}B"
)
def test_the_running_hasher_equals_hashlib(size: int) -> None:
    data = os.urandom(size)
    hasher = TreeHasher(max_pending_blocks=2)
    view, start, piece = memoryview(data), 0, 3 * 2**20 + 17  # pieces across block bounds
    while start < size:
        hasher.update(view[start : start + piece])
        start += piece
    assert hasher.hexdigest() == hashlib_tree(data)


def test_a_save_hashes_while_writing(tmp_path: Path) -> None:
    store = tmp_path / "KR"
    with CheckpointStore(str(store)) as s:
        s.save(big_state(), step=3)
    sha, size = manifest_entry(str(store), 3)
    data = (store / "step-000000003" / TENSORS_NAME).read_bytes()
    assert len(data) == size > BLOCK
    assert sha == hashlib_tree(data)


@pytest.mark.parametrize("chunk_bytes", [8 << 20, 3 * 2**20 + 1])
def test_a_local_copy_hashes_while_copying_without_reading_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    src, dst = tmp_path / "KR", tmp_path / "FR"
    with CheckpointStore(str(src)) as s:
        s.save(big_state(), step=5)

    def no_second_pass(self: object, path: str) -> str:
        raise AssertionError(f"{path} was read again to hash it")

    monkeypatch.setattr(LocalBackend, "sha256", no_second_pass)
    result = transfer_latest(str(src), str(dst), chunk_bytes=chunk_bytes)
    assert result is not None and result.step == 5
    sha, _ = manifest_entry(str(dst), 5)
    copied = (dst / "step-000000005" / TENSORS_NAME).read_bytes()
    assert copied == (src / "step-000000005" / TENSORS_NAME).read_bytes()
    assert sha == hashlib_tree(copied)


def test_a_copy_from_an_object_store_reuses_its_buffers_safely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = fsspec.filesystem("memory", skip_instance_cache=True)
    root = f"/src-{os.getpid()}"
    try:
        with CheckpointStore(root, filesystem=fs) as s:
            s.save(big_state(), step=2)

        def no_second_pass(self: object, path: str) -> str:
            raise AssertionError(f"{path} was read again to hash it")

        monkeypatch.setattr(LocalBackend, "sha256", no_second_pass)
        monkeypatch.setattr(FsspecBackend, "sha256", no_second_pass)
        dst = tmp_path / "FR"
        result = transfer_latest(root, str(dst), src_filesystem=fs, chunk_bytes=1 << 20)
        assert result is not None and result.step == 2
        copied = (dst / "step-000000002" / TENSORS_NAME).read_bytes()
        assert copied == fs.cat_file(f"{root}/step-000000002/{TENSORS_NAME}")
        assert manifest_entry(str(dst), 2)[0] == hashlib_tree(copied)
    finally:
        fs.rm(root, recursive=True)
