"""Large local checkpoint files are written and read past the page cache (O_DIRECT), verified.

Real files on the test's disk; the checksum is recomputed here with hashlib alone. Where a
filesystem refuses O_DIRECT (tmpfs), the page cache serves, with the same checks.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import caftm.checkpoint._backend as backend_module
import caftm.checkpoint._transfer_files as transfer_files
from caftm.checkpoint import CheckpointStore, TrainingState, transfer_latest
from caftm.checkpoint._direct import ALIGN, MIN_BYTES, open_direct, read_direct, write_direct
from caftm.checkpoint.checksum import TreeHasher
from caftm.checkpoint.manifest import TENSORS_NAME
from caftm.errors import CheckpointError

BLOCK = 64 * 2**20
FLOATS = 17_000_003  # 68 MB: two checksum blocks, a length no multiple of the disk block


def hashlib_tree(data: bytes) -> str:
    if len(data) <= BLOCK:
        return hashlib.sha256(data).hexdigest()
    blocks = (data[i : i + BLOCK] for i in range(0, len(data), BLOCK))
    return hashlib.sha256(b"".join(hashlib.sha256(b).digest() for b in blocks)).hexdigest()


def model(seed: int | None) -> torch.nn.ParameterList:
    """``FLOATS`` float32 parameters drawn from ``seed`` (None: zeros)."""
    if seed is None:
        values = torch.zeros(FLOATS)
    else:
        values = torch.rand(FLOATS, generator=torch.Generator().manual_seed(seed))
    return torch.nn.ParameterList([torch.nn.Parameter(values, requires_grad=False)])


def direct_supported(folder: Path) -> bool:
    probe = folder / "probe"
    fd = open_direct(str(probe), os.O_WRONLY | os.O_CREAT)
    probe.unlink(missing_ok=True)
    if fd is None:
        return False
    os.close(fd)
    return True


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Each direct open the store makes: (flags, whether the filesystem took O_DIRECT)."""
    calls: list[tuple[int, bool]] = []
    real = backend_module.open_direct

    def spy(path: str, flags: int, mode: int = 0o644) -> Any:
        fd = real(path, flags, mode)
        calls.append((flags, fd is not None))
        return fd

    monkeypatch.setattr(backend_module, "open_direct", spy)
    return calls


def test_a_large_checkpoint_goes_past_the_page_cache_and_comes_back_bit_identical(
    tmp_path: Path, opened: list[tuple[int, bool]]
) -> None:
    if not direct_supported(tmp_path):
        pytest.skip(f"{tmp_path}'s filesystem refuses O_DIRECT")
    saved = model(3)
    with CheckpointStore(str(tmp_path / "KR")) as store:
        info = store.save(TrainingState(model=saved, rng=False), step=4)
    path = tmp_path / "KR" / "step-000000004" / TENSORS_NAME
    data = path.read_bytes()
    entry = info.manifest.file(TENSORS_NAME)
    assert len(data) == entry.size_bytes and len(data) % ALIGN  # the tail was cut to size
    assert entry.sha256 == hashlib_tree(data)
    assert torch.equal(next(iter(load_file(path).values())), saved[0].data)  # safetensors reads it
    assert opened == [(os.O_WRONLY | os.O_CREAT | os.O_EXCL, True)]  # only the large file

    restored = model(None)
    with CheckpointStore(str(tmp_path / "KR")) as store:
        assert store.restore_latest(TrainingState(model=restored, rng=False)) is not None
    assert torch.equal(restored[0].data, saved[0].data)
    assert opened[1:] == [(os.O_RDONLY, True)]


def test_a_flipped_byte_in_a_large_file_is_caught_before_anything_is_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with CheckpointStore(str(tmp_path), keep_last=None) as store:
        store.save(TrainingState(model=model(1), rng=False), step=1)
        store.save(TrainingState(model=model(2), rng=False), step=2)
    path = tmp_path / "step-000000002" / TENSORS_NAME
    with open(path, "r+b") as f:  # one bit, in the second checksum block
        f.seek(BLOCK + 12345)
        byte = f.read(1)[0]
        f.seek(BLOCK + 12345)
        f.write(bytes([byte ^ 0x01]))
    restored = model(None)
    with CheckpointStore(str(tmp_path), keep_last=None) as store:
        with pytest.raises(CheckpointError, match=r"step-000000002/tensors.safetensors sha256"):
            store.load(2)
        info = store.restore_latest(TrainingState(model=restored, rng=False))
    assert info is not None and info.step == 1  # fell back to the intact one
    assert torch.equal(restored[0].data, model(1)[0].data)
    assert "skipping checkpoint" in caplog.text


def test_a_truncated_large_file_is_refused_by_its_size(tmp_path: Path) -> None:
    with CheckpointStore(str(tmp_path)) as store:
        info = store.save(TrainingState(model=model(1), rng=False), step=1)
    path = tmp_path / "step-000000001" / TENSORS_NAME
    os.truncate(path, info.manifest.file(TENSORS_NAME).size_bytes - 1)
    with (
        CheckpointStore(str(tmp_path)) as store,
        pytest.raises(CheckpointError, match=r"bytes, manifest says"),
    ):
        store.load(1)


def test_where_o_direct_is_refused_the_page_cache_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem that refuses O_DIRECT (older tmpfs, some FUSE mounts; played here by
    open_direct answering None, as it does on EINVAL): the same checkpoint, buffered."""
    refused: list[int] = []

    def refusing(path: str, flags: int, mode: int = 0o644) -> None:
        refused.append(flags)

    monkeypatch.setattr(backend_module, "open_direct", refusing)
    saved, restored = model(5), model(None)
    with CheckpointStore(str(tmp_path)) as store:
        info = store.save(TrainingState(model=saved, rng=False), step=1)
        assert store.restore_latest(TrainingState(model=restored, rng=False)) is not None
    data = (tmp_path / "step-000000001" / TENSORS_NAME).read_bytes()
    assert info.manifest.file(TENSORS_NAME).sha256 == hashlib_tree(data)
    assert torch.equal(restored[0].data, saved[0].data)
    assert refused == [os.O_WRONLY | os.O_CREAT | os.O_EXCL, os.O_RDONLY]


def test_direct_writes_and_reads_keep_every_byte_across_chunk_and_block_bounds(
    tmp_path: Path,
) -> None:
    if not direct_supported(tmp_path):
        pytest.skip(f"{tmp_path}'s filesystem refuses O_DIRECT")
    data = os.urandom(MIN_BYTES + 3 * 2**20 + 4095)
    view = memoryview(data)
    cuts = [0, 1, 17 * 2**20 + 3, 17 * 2**20 + 3, 33 * 2**20 - 1, len(data)]  # an empty piece too
    pieces = [view[a:b] for a, b in itertools.pairwise(cuts)]
    path = str(tmp_path / "file")
    fd = open_direct(path, os.O_WRONLY | os.O_CREAT)
    assert fd is not None
    try:
        assert write_direct(fd, pieces) == len(data)
    finally:
        os.close(fd)
    assert Path(path).read_bytes() == data
    hasher = TreeHasher()
    fd = open_direct(path, os.O_RDONLY)
    assert fd is not None
    try:
        buffer = read_direct(fd, len(data), hasher)
    finally:
        os.close(fd)
    assert bytes(buffer.numpy()) == data
    assert hasher.hexdigest() == hashlib_tree(data)


def test_a_local_copy_of_a_large_checkpoint_goes_past_the_page_cache_both_ways(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not direct_supported(tmp_path):
        pytest.skip(f"{tmp_path}'s filesystem refuses O_DIRECT")
    taken: list[int] = []
    real = transfer_files.open_direct

    def spy(path: str, flags: int, mode: int = 0o644) -> Any:
        fd = real(path, flags, mode)
        if fd is not None:
            taken.append(flags)
        return fd

    monkeypatch.setattr(transfer_files, "open_direct", spy)
    saved, restored = model(8), model(None)
    src, dst = tmp_path / "KR", tmp_path / "FR"
    with CheckpointStore(str(src)) as store:
        store.save(TrainingState(model=saved, rng=False), step=6)
    result = transfer_latest(str(src), str(dst))
    assert result is not None and result.step == 6
    assert sorted(taken) == sorted([os.O_RDONLY, os.O_WRONLY | os.O_CREAT | os.O_EXCL])
    name = Path("step-000000006") / TENSORS_NAME
    assert (dst / name).read_bytes() == (src / name).read_bytes()
    with CheckpointStore(str(dst)) as store:
        assert store.restore_latest(TrainingState(model=restored, rng=False)) is not None
    assert torch.equal(restored[0].data, saved[0].data)


def test_a_damaged_large_source_is_not_copied(tmp_path: Path) -> None:
    src, dst = tmp_path / "KR", tmp_path / "FR"
    with CheckpointStore(str(src)) as store:
        store.save(TrainingState(model=model(9), rng=False), step=2)
    with open(src / "step-000000002" / TENSORS_NAME, "r+b") as f:
        f.seek(40 * 2**20)
        f.write(b"\xff\xfe")
    with pytest.raises(CheckpointError, match=r"none complete|does not match|damaged"):
        transfer_latest(str(src), str(dst))
    assert not (dst / "step-000000002" / "MANIFEST.json").exists()


def test_direct_writes_and_reads_refused_after_the_open_fall_back_to_the_page_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem that opens with O_DIRECT but refuses the transfers (a block size larger
    than 4 KiB; played by the direct calls raising EINVAL): the same checkpoint, buffered."""
    refused: list[str] = []

    def refuse(name: str) -> Any:
        def call(*args: Any) -> Any:
            refused.append(name)
            raise OSError(errno.EINVAL, "Invalid argument")

        return call

    monkeypatch.setattr(backend_module, "write_direct", refuse("write"))
    monkeypatch.setattr(backend_module, "read_direct", refuse("read"))
    saved, restored = model(6), model(None)
    with CheckpointStore(str(tmp_path)) as store:
        info = store.save(TrainingState(model=saved, rng=False), step=1)
        assert store.restore_latest(TrainingState(model=restored, rng=False)) is not None
    folder = tmp_path / "step-000000001"
    data = (folder / TENSORS_NAME).read_bytes()
    assert info.manifest.file(TENSORS_NAME).sha256 == hashlib_tree(data)
    assert torch.equal(restored[0].data, saved[0].data)
    assert refused == ["write", "read"] or not direct_supported(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["MANIFEST.json", TENSORS_NAME, "state.json"]
    )
