"""On a CUDA GPU: CUDA tensors and CUDA RNG round-trip, async snapshots of device tensors, and a
dropout training run resumed from a checkpoint continues bit-identically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from caftm.checkpoint import CheckpointStore, TrainingState

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def make(seed: int = 0) -> TrainingState:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(256, 10)
    ).cuda()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return TrainingState(model=model, optimizer=optimizer, extra={"steps": 0})


def steps(state: TrainingState, count: int) -> None:
    assert state.model is not None and state.optimizer is not None
    for _ in range(count):
        inputs = torch.randn(32, 64, device="cuda")  # drawn from the CUDA generator
        labels = torch.randint(0, 10, (32,), device="cuda")
        loss = torch.nn.functional.cross_entropy(state.model(inputs), labels)
        state.optimizer.zero_grad()
        loss.backward()
        state.optimizer.step()
        state.extra["steps"] += 1


@pytest.fixture
def cuda_deterministic() -> object:
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield None
    torch.use_deterministic_algorithms(was)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_cuda_run_resumes_bit_identically(
    tmp_path: Path, asynchronous: bool, cuda_deterministic: object
) -> None:
    store = CheckpointStore(tmp_path)
    state = make()
    steps(state, 20)
    if asynchronous:
        handle = store.save_async(state, step=20)
        steps(state, 30)  # training goes on while the snapshot is written
        handle.wait()
    else:
        store.save(state, step=20)
        steps(state, 30)
    assert state.model is not None
    expected = {k: v.clone() for k, v in state.model.state_dict().items()}

    resumed = make(seed=123)  # different init and RNG: all must come from the checkpoint
    info = store.restore_latest(resumed)
    assert info is not None and info.step == 20 and resumed.extra["steps"] == 20
    steps(resumed, 30)
    assert resumed.model is not None
    for key, value in resumed.model.state_dict().items():
        assert value.is_cuda and torch.equal(value, expected[key]), key


def test_cuda_rng_state_is_restored(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    state = TrainingState(extra={})
    store.save(state, step=1)
    first = torch.rand(4, device="cuda")
    torch.rand(100, device="cuda")
    store.restore(state, 1)
    assert torch.equal(torch.rand(4, device="cuda"), first)
