"""A worker waiting for its go reads and verifies the newest checkpoint ahead of its restore.

``CheckpointStore.prefetch_latest`` applies nothing; ``restore_latest`` then applies what it
read without reading it again, but only while it is still the newest checkpoint, unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.checkpoint._backend import LocalBackend
from caftm.checkpoint.manifest import MANIFEST_NAME, TENSORS_NAME


def model(value: float) -> torch.nn.Linear:
    layer = torch.nn.Linear(64, 64)
    with torch.no_grad():
        layer.weight.fill_(value)
        layer.bias.fill_(value)
    return layer


def state(layer: torch.nn.Module) -> TrainingState:
    return TrainingState(model=layer, rng=False)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each tensors file the stores read (and verify), by path."""
    seen: list[str] = []
    real = LocalBackend.read_verified

    def counting(self: LocalBackend, path: str, *args: Any, **kwargs: Any) -> memoryview:
        seen.append(path)
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(LocalBackend, "read_verified", counting)
    return seen


def test_a_prefetched_checkpoint_is_applied_at_the_restore_without_a_second_read(
    tmp_path: Path, reads: list[str]
) -> None:
    with CheckpointStore(str(tmp_path)) as store:
        store.save(state(model(1.5)), step=7)
    waiting = model(0.0)
    with CheckpointStore(str(tmp_path)) as store:
        assert store.prefetch_latest() == 7
        assert store.prefetch_latest() == 7  # still the newest: not read again
        assert torch.all(waiting.weight == 0.0)  # nothing applied while waiting
        info = store.restore_latest(state(waiting))
    assert info is not None and info.step == 7
    assert torch.all(waiting.weight == 1.5) and torch.all(waiting.bias == 1.5)
    assert len(reads) == 1


def test_a_newer_checkpoint_after_the_prefetch_is_the_one_restored(tmp_path: Path) -> None:
    waiting = model(0.0)
    with CheckpointStore(str(tmp_path), keep_last=None) as store:
        assert store.prefetch_latest() is None  # nothing there yet
        store.save(state(model(1.0)), step=3)
        assert store.prefetch_latest() == 3
        store.save(state(model(2.0)), step=4)
        info = store.restore_latest(state(waiting))
    assert info is not None and info.step == 4
    assert torch.all(waiting.weight == 2.0)


def test_a_step_rewritten_after_the_prefetch_is_read_again(
    tmp_path: Path, reads: list[str]
) -> None:
    waiting = model(0.0)
    with CheckpointStore(str(tmp_path)) as store:
        store.save(state(model(1.0)), step=5)
        assert store.prefetch_latest() == 5
        store.save(state(model(3.0)), step=5)  # the same step, new bytes, a new manifest
        info = store.restore_latest(state(waiting))
    assert info is not None and info.step == 5
    assert torch.all(waiting.weight == 3.0)
    assert len(reads) == 2


def test_an_incomplete_or_damaged_newest_step_is_not_prefetched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with CheckpointStore(str(tmp_path), keep_last=None) as store:
        store.save(state(model(1.0)), step=1)
        store.save(state(model(2.0)), step=2)
    step2 = tmp_path / "step-000000002"
    manifest = (step2 / MANIFEST_NAME).read_bytes()
    (step2 / MANIFEST_NAME).unlink()  # being written
    with CheckpointStore(str(tmp_path), keep_last=None) as store:
        assert store.prefetch_latest() == 1
        (step2 / MANIFEST_NAME).write_bytes(manifest)  # complete now, but a byte flipped
        data = bytearray((step2 / TENSORS_NAME).read_bytes())
        data[-1] ^= 0x01
        (step2 / TENSORS_NAME).write_bytes(bytes(data))
        assert store.prefetch_latest() is None
        waiting = model(0.0)
        info = store.restore_latest(state(waiting))
    assert info is not None and info.step == 1  # the damaged one skipped, said so
    assert torch.all(waiting.weight == 1.0)
    assert "skipping checkpoint" in caplog.text and "step-000000002" in caplog.text
