"""latest_complete_step: the newest complete step of a store or a DDP job's rank stores."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ckpt_helpers import EdgeMemoryFS

from caftm.checkpoint import CheckpointStore, TrainingState, latest_complete_step
from caftm.errors import CheckpointError, ConfigError


def save(url: str, *steps: int, **options: object) -> None:
    store = CheckpointStore(url, keep_last=None, **options)  # type: ignore[arg-type]
    for step in steps:
        store.save(TrainingState(model=torch.nn.Linear(4, 2)), step=step)


def test_fresh_or_absent_store_has_no_step(tmp_path: Path) -> None:
    assert latest_complete_step(tmp_path / "never-written") is None
    (tmp_path / "empty").mkdir()
    assert latest_complete_step(tmp_path / "empty") is None


def test_newest_step_with_a_valid_manifest(tmp_path: Path) -> None:
    save(str(tmp_path), 3, 12, 40, 41)
    assert latest_complete_step(tmp_path) == 41
    (tmp_path / "step-000000041" / "MANIFEST.json").unlink()  # interrupted save
    (tmp_path / "step-000000040" / "MANIFEST.json").write_text("{not json")
    (tmp_path / "step-000000099").mkdir()  # a save that has only begun
    assert latest_complete_step(tmp_path) == 12


def test_manifest_of_another_step_is_not_complete(tmp_path: Path) -> None:
    save(str(tmp_path), 1, 2)
    manifest = (tmp_path / "step-000000001" / "MANIFEST.json").read_bytes()
    (tmp_path / "step-000000002" / "MANIFEST.json").write_bytes(manifest)
    assert latest_complete_step(tmp_path) == 1


def test_checksums_are_not_read(tmp_path: Path) -> None:
    save(str(tmp_path), 5)
    tensors = tmp_path / "step-000000005" / "tensors.safetensors"
    tensors.write_bytes(bytes(tensors.stat().st_size))  # damaged data: only a restore tells
    assert latest_complete_step(tmp_path) == 5
    assert CheckpointStore(str(tmp_path)).latest() is None


def test_ddp_step_must_be_complete_on_every_rank(tmp_path: Path) -> None:
    save(str(tmp_path / "rank-00000"), 1, 2, 3)
    save(str(tmp_path / "rank-00001"), 1, 2)
    assert latest_complete_step(tmp_path) == 2
    (tmp_path / "rank-00001" / "step-000000002" / "MANIFEST.json").unlink()
    assert latest_complete_step(tmp_path) == 1


def test_ddp_with_a_missing_rank_store_is_refused(tmp_path: Path) -> None:
    save(str(tmp_path / "rank-00000"), 1)
    save(str(tmp_path / "rank-00002"), 1)
    with pytest.raises(CheckpointError, match="not rank 1"):
        latest_complete_step(tmp_path)


def test_fsspec_store(edge_fs: tuple[EdgeMemoryFS, str]) -> None:
    fs, root = edge_fs
    save(f"{root}/rank-00000", 7, 8, filesystem=fs)
    save(f"{root}/rank-00001", 7, 8, filesystem=fs)
    assert latest_complete_step(root, filesystem=fs) == 8
    fs.rm(f"{root}/rank-00001/step-000000008/MANIFEST.json")
    assert latest_complete_step(root, filesystem=fs) == 7


def test_bad_url_is_refused() -> None:
    with pytest.raises(ConfigError):
        latest_complete_step("")
    with pytest.raises(CheckpointError, match="cannot open checkpoint store"):
        latest_complete_step("nosuchprotocol://x/y")
