"""A small, fully deterministic CPU training run used by the checkpoint tests.

A CNN on 512 generated 1x16x16 images (10 classes, fixed-seed generator), shuffled by a
ResumableSampler, with dropout, random flips drawn from Python's ``random``, noise drawn from
numpy's global RNG, AdamW, a warm-up + cosine SequentialLR and a CPU GradScaler. Every source of
state a resume must restore is exercised.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from caftm.checkpoint import CheckpointStore, ResumableSampler, TrainingState

DATASET_LEN = 512
BATCH_SIZE = 8
STEPS_PER_EPOCH = DATASET_LEN // BATCH_SIZE


def set_deterministic() -> None:
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)


def make_dataset(seed: int = 1234) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(DATASET_LEN, 1, 16, 16, generator=generator)
    labels = torch.randint(0, 10, (DATASET_LEN,), generator=generator)
    return TensorDataset(images, labels)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(x).flatten(1)))


class Padding:
    """Extra state of a chosen size, so checkpoint writes take measurable time."""

    def __init__(self, num_bytes: int) -> None:
        self.tensor = torch.arange(max(num_bytes // 4, 1), dtype=torch.float32)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"padding": self.tensor}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.tensor.copy_(state["padding"])


@dataclass
class Run:
    model: SmallCNN
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    sampler: ResumableSampler
    loader: DataLoader[tuple[torch.Tensor, ...]]
    state: TrainingState
    extra: dict[str, float] = field(default_factory=dict)


def make_run(*, schedule_steps: int = 200, padding_bytes: int = 0, seed: int = 0) -> Run:
    """Build every object of the run from fixed seeds (the state a resume overwrites)."""
    set_deterministic()
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)
    model = SmallCNN()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    warmup = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=20)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=schedule_steps)
    scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warmup, cosine], milestones=[20])
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8, growth_interval=25)
    sampler = ResumableSampler(DATASET_LEN, shuffle=True, seed=7)
    loader = DataLoader(
        make_dataset(), batch_size=BATCH_SIZE, sampler=sampler, generator=torch.Generator()
    )
    extra = {"loss_sum": 0.0}
    stateful = {"padding": Padding(padding_bytes)} if padding_bytes else {}
    state = TrainingState(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        sampler=sampler,
        stateful=stateful,
        extra=extra,
    )
    return Run(model, optimizer, scheduler, scaler, sampler, loader, state, extra)


def train(
    run: Run,
    *,
    start_step: int,
    total_steps: int,
    store: CheckpointStore | None = None,
    checkpoint_every: int = 0,
    after_step: Callable[[int], None] | None = None,
) -> int:
    """Train from ``start_step`` to ``total_steps``; checkpoint every N steps; returns the step.

    ``after_step(step)`` runs after each step and its checkpoint (it may exit the process).
    """
    step = start_step
    loss_fn = nn.CrossEntropyLoss()
    run.model.train()
    while step < total_steps:
        for images, labels in run.loader:
            if random.random() < 0.5:
                images = images.flip(-1)
            noise = np.random.normal(0.0, 0.05, size=images.shape).astype(np.float32)
            images = images + torch.from_numpy(noise)
            run.optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(run.model(images), labels)
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.scheduler.step()
            run.extra["loss_sum"] += float(loss.item())
            step += 1
            if store is not None and checkpoint_every and step % checkpoint_every == 0:
                store.save(run.state, step=step)
            if after_step is not None:
                after_step(step)
            if step >= total_steps:
                break
    return step


def final_tensors(run: Run) -> dict[str, torch.Tensor]:
    """Everything that must match bit-for-bit at the end: weights, buffers, optimiser moments."""
    out = {f"model.{k}": v.detach().clone() for k, v in run.model.state_dict().items()}
    for index, param_state in run.optimizer.state_dict()["state"].items():
        for name, value in param_state.items():
            out[f"optim.{index}.{name}"] = torch.as_tensor(value).clone()
    out["loss_sum"] = torch.tensor(run.extra["loss_sum"], dtype=torch.float64)
    out["scale"] = torch.tensor(run.scaler.get_scale(), dtype=torch.float64)
    out["lr"] = torch.tensor(run.scheduler.get_last_lr(), dtype=torch.float64)
    out["torch_rng"] = torch.get_rng_state()
    return out


def write_final(run: Run, path: str) -> None:
    temp = f"{path}.tmp"
    save_file(final_tensors(run), temp)
    os.replace(temp, path)
