"""The manifest names its checksum scheme; pruning reads each manifest at most once."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch
from fsspec.implementations.memory import MemoryFileSystem

from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.checkpoint.checksum import CHECKSUM_NAME
from caftm.errors import CheckpointError

MANIFEST = "MANIFEST.json"


def small_state(value: float = 1.0) -> TrainingState:
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(value)
    return TrainingState(model=model, extra={"value": value}, rng=False)


# -- the checksum scheme in the manifest -------------------------------------------------------
def test_new_manifests_name_their_checksum_scheme(tmp_path: Path) -> None:
    info = CheckpointStore(tmp_path).save(small_state(), step=1)
    body = json.loads((tmp_path / "step-000000001" / MANIFEST).read_text())
    assert body["checksum"] == CHECKSUM_NAME == "sha256-tree-64MiB"
    assert info.manifest.checksum == CHECKSUM_NAME


def test_manifest_without_the_scheme_still_loads(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(small_state(2.0), step=4)
    path = tmp_path / "step-000000004" / MANIFEST
    body = json.loads(path.read_text())
    del body["checksum"]  # as the code before the field wrote them
    path.write_text(json.dumps(body, indent=1))
    latest = store.latest()
    assert latest is not None and latest.step == 4
    assert latest.manifest.checksum == CHECKSUM_NAME
    target = small_state(0.0)
    info = store.restore_latest(target)
    assert info is not None and target.extra["value"] == 2.0


def test_manifest_naming_an_unknown_scheme_is_refused(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(small_state(1.0), step=1)
    path = tmp_path / "step-000000001" / MANIFEST
    body = json.loads(path.read_text())
    body["checksum"] = "blake3-1MiB"
    path.write_text(json.dumps(body))
    with pytest.raises(CheckpointError) as caught:
        store.load(1)
    message = str(caught.value)
    assert "\n" not in message
    assert "blake3-1MiB" in message and CHECKSUM_NAME in message and "step-000000001" in message
    assert store.latest() is None and store.checkpoints() == []


# -- pruning reads what it does not know, once -------------------------------------------------
class CountingMemoryFS(MemoryFileSystem):
    """An in-memory fsspec filesystem that counts reads of each manifest."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.manifest_reads: dict[str, int] = {}

    def _count(self, path: str) -> None:
        if str(path).endswith(MANIFEST):
            step_dir = str(path).rstrip("/").split("/")[-2]
            self.manifest_reads[step_dir] = self.manifest_reads.get(step_dir, 0) + 1

    def cat_file(self, path: str, start: Any = None, end: Any = None, **kwargs: Any) -> Any:
        self._count(path)
        return super().cat_file(path, start, end, **kwargs)

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if "r" in mode:
            self._count(path)
        return super()._open(path, mode, **kwargs)


@pytest.fixture
def counting_fs() -> tuple[CountingMemoryFS, str]:
    return CountingMemoryFS(skip_instance_cache=True), f"/prune-{uuid.uuid4().hex}"


def test_saves_without_pruning_never_reread_their_manifests(
    counting_fs: tuple[CountingMemoryFS, str],
) -> None:
    fs, root = counting_fs
    store = CheckpointStore(root, filesystem=fs, keep_last=None)
    state = small_state()
    for step in range(1, 7):
        store.save(state, step=step)
    assert fs.manifest_reads == {}  # every manifest was written by this store
    assert [c.step for c in store.checkpoints()] == [1, 2, 3, 4, 5, 6]


def test_pruning_reads_each_foreign_manifest_once(
    counting_fs: tuple[CountingMemoryFS, str],
) -> None:
    fs, root = counting_fs
    writer = CheckpointStore(root, filesystem=fs, keep_last=None)
    state = small_state()
    for step in (1, 2):
        writer.save(state, step=step)
    fs.manifest_reads.clear()

    store = CheckpointStore(root, filesystem=fs, keep_last=3)  # a second process, say
    store.save(state, step=3)
    assert fs.manifest_reads == {"step-000000001": 1, "step-000000002": 1}
    writer.save(state, step=4)  # another process adds one behind the store's back
    fs.manifest_reads.clear()
    for step in (5, 6):
        store.save(state, step=step)
    assert fs.manifest_reads == {"step-000000004": 1}  # only the one it had not seen
    assert [c.step for c in store.checkpoints()] == [4, 5, 6]  # keep_last still holds


def test_pruning_still_removes_abandoned_partial_checkpoints(
    counting_fs: tuple[CountingMemoryFS, str],
) -> None:
    fs, root = counting_fs
    store = CheckpointStore(root, filesystem=fs, keep_last=2)
    state = small_state()
    store.save(state, step=1)
    fs.pipe_file(f"{root}/step-000000002/tensors.safetensors", b"partial")  # died mid-write
    store.save(state, step=3)
    store.save(state, step=4)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False))
    assert names == ["step-000000003", "step-000000004"]
