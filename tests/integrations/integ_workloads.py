"""Small deterministic workloads shared by the integration tests and their child scripts.

A tiny CNN (with dropout, so the RNG matters) on a generated image dataset: 96 samples of
1×8×8, 4 classes. Everything is seeded; :func:`deterministic` switches torch into deterministic
mode. Nothing here touches the network or the disk.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

DATASET_LEN = 96
BATCH_SIZE = 8
NUM_CLASSES = 4
DATA_SEED = 1234
MODEL_SEED = 7


def deterministic(seed: int = MODEL_SEED) -> None:
    """Deterministic algorithms, one thread, and every global RNG seeded with ``seed``."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def scramble_global_rngs() -> None:
    """Move every global RNG somewhere else, to prove that a resume restores them."""
    random.seed(999)
    np.random.seed(999)
    torch.manual_seed(999)


def make_dataset() -> TensorDataset:
    """``DATASET_LEN`` generated images (float32, 1×8×8) with labels in [0, NUM_CLASSES)."""
    gen = torch.Generator().manual_seed(DATA_SEED)
    images = torch.randn(DATASET_LEN, 1, 8, 8, generator=gen)
    labels = torch.randint(0, NUM_CLASSES, (DATASET_LEN,), generator=gen)
    return TensorDataset(images, labels)


class TinyCNN(nn.Module):
    """conv → relu → pool → dropout → linear; about 300 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(p=0.25)
        self.head = nn.Linear(4 * 4 * 4, NUM_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = self.pool(torch.relu(self.conv(images)))
        return self.head(self.dropout(hidden.flatten(1)))


def make_model(seed: int = MODEL_SEED) -> TinyCNN:
    """A freshly initialised model; the same ``seed`` always gives the same weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return TinyCNN()


def make_optimizer(
    model: nn.Module,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """SGD with momentum (it has state) and a per-step decaying learning rate."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.8)
    return optimizer, scheduler


def parameters_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of every parameter and buffer."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def assert_bit_identical(
    expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]
) -> None:
    """Every tensor equal, bit for bit (torch.equal), and the same names."""
    assert expected.keys() == actual.keys()
    differing = [name for name in expected if not torch.equal(expected[name], actual[name])]
    assert not differing, f"tensors differ after resume: {differing}"
