"""Asynchronous saves: snapshot on the caller, write behind, identical bytes, errors surface."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from ckpt_training import make_run, train

from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.errors import CheckpointError, ConfigError


def test_async_save_writes_the_same_bytes_as_sync(tmp_path: Path, deterministic: None) -> None:
    run = make_run()
    train(run, start_step=0, total_steps=12)
    sync_info = CheckpointStore(tmp_path / "sync").save(run.state, step=12)
    with CheckpointStore(tmp_path / "async") as store:
        async_info = store.save_async(run.state, step=12).wait()
    sync_files = {f.name: (f.size_bytes, f.sha256) for f in sync_info.manifest.files}
    async_files = {f.name: (f.size_bytes, f.sha256) for f in async_info.manifest.files}
    assert sync_files == async_files


def test_training_continues_while_the_write_is_blocked(edge_fs: tuple[object, str]) -> None:
    fs, root = edge_fs
    gate = threading.Event()
    fs.gate = gate  # type: ignore[attr-defined]
    model = torch.nn.Linear(8, 8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    state = TrainingState(model=model, optimizer=optimizer, extra={"steps": 3})
    at_save = {k: v.clone() for k, v in model.state_dict().items()}

    store = CheckpointStore(root, filesystem=fs)
    handle = store.save_async(state, step=3)
    assert fs.writes_blocked.wait(10)  # type: ignore[attr-defined]
    for _ in range(5):  # the training thread goes on changing the weights meanwhile
        model(torch.randn(2, 8)).sum().backward()
        optimizer.step()
        state.extra["steps"] += 1
    assert not handle.done()
    gate.set()
    info = handle.wait(timeout_s=30)
    assert info.step == 3

    fs.gate = None  # type: ignore[attr-defined]
    restored = TrainingState(model=torch.nn.Linear(8, 8), extra={})
    store.restore(restored, info)
    assert restored.model is not None
    for key, value in restored.model.state_dict().items():
        assert torch.equal(value, at_save[key]), key
    assert restored.extra == {"steps": 3}
    store.close()


def test_async_write_error_surfaces_on_wait(edge_fs: tuple[object, str]) -> None:
    fs, root = edge_fs
    fs.free_bytes = 10  # type: ignore[attr-defined]
    store = CheckpointStore(root, filesystem=fs)
    handle = store.save_async(TrainingState(model=torch.nn.Linear(4, 4)), step=1)
    with pytest.raises(CheckpointError, match="No space left"):
        handle.wait()
    fs.free_bytes = None  # type: ignore[attr-defined]
    store.save(TrainingState(model=torch.nn.Linear(4, 4)), step=2)  # already reported: no raise
    assert [c.step for c in store.checkpoints()] == [2]


def test_unobserved_async_error_surfaces_on_next_save(edge_fs: tuple[object, str]) -> None:
    fs, root = edge_fs
    fs.free_bytes = 10  # type: ignore[attr-defined]
    store = CheckpointStore(root, filesystem=fs)
    store.save_async(TrainingState(model=torch.nn.Linear(4, 4)), step=1)
    with pytest.raises(CheckpointError, match="previous asynchronous save of step 1 failed"):
        store.save_async(TrainingState(model=torch.nn.Linear(4, 4)), step=2)
    fs.free_bytes = None  # type: ignore[attr-defined]
    store.save_async(TrainingState(model=torch.nn.Linear(4, 4)), step=3)
    info = store.wait()
    assert info is not None and info.step == 3
    store.close()


def test_one_write_in_flight_at_a_time(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=None)
    state = TrainingState(model=torch.nn.Linear(64, 64))
    handles = [store.save_async(state, step=s) for s in range(1, 5)]
    assert all(h.done() for h in handles[:-1])  # each call waited for the previous write
    store.close()
    assert [c.step for c in store.checkpoints()] == [1, 2, 3, 4]


def test_async_save_rejects_a_negative_step_at_once(tmp_path: Path) -> None:
    with CheckpointStore(tmp_path) as store:
        with pytest.raises(ConfigError, match="step must be >= 0"):
            store.save_async(TrainingState(model=torch.nn.Linear(2, 2)), step=-1)
        assert store.checkpoints() == []
