"""A small CNN trained carbon-aware on the CPU: the worker script of the demo job.

An ordinary script written with :class:`~caftm.integrations.torch.CarbonAwareTraining`: run
alone it trains at the config's start site and stops when caftm says move or pause; run by
``caftm run JOB.yaml`` the supervisor tells it (through its environment) its site, checkpoint
store and ledger, and restarts it wherever the job goes next. Data are generated (512 12×12
images labelled by the sign of their mean), the model is seeded: every run of the same steps
ends with bit-identical parameters, however often it was moved.

    python -m caftm.demo.worker --config JOB.yaml [--checkpoint-every N]
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from caftm.checkpoint import ResumableSampler
from caftm.control import ControllerConfig
from caftm.errors import CaftmError
from caftm.integrations.torch import CarbonAwareTraining

__all__ = ["main", "make_data", "make_model"]


def make_data() -> TensorDataset:
    """512 generated 12×12 images labelled by the sign of their mean."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(512, 1, 12, 12, generator=gen)
    labels = (images.mean(dim=(1, 2, 3)) > 0).long()  # a learnable rule
    return TensorDataset(images, labels)


def make_model() -> nn.Module:
    """A small CNN, the same weights every time."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(8 * 6 * 6, 2),
    )


def train(config: ControllerConfig, *, checkpoint_every: int | None) -> CarbonAwareTraining:
    """Train (resuming from the latest checkpoint) until done, moved, paused or preempted."""
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # a small model: threads cost more than they give
    data = make_data()
    sampler = ResumableSampler(len(data), shuffle=True, seed=1)
    loader = DataLoader(data, batch_size=32, sampler=sampler, generator=torch.Generator())
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with CarbonAwareTraining(
        config,
        model=model,
        optimizer=optimizer,
        sampler=sampler,
        checkpoint_every_steps=checkpoint_every,
    ) as caftm:
        while caftm.running:
            for images, labels in loader:
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(images), labels)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                caftm.step()
                if not caftm.running:
                    break
    return caftm


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: one error line and exit code 2 for bad input."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the job (or controller) YAML")
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="N")
    args = parser.parse_args(argv)
    try:
        config = ControllerConfig.from_yaml(args.config)
        caftm = train(config, checkpoint_every=args.checkpoint_every)
    except CaftmError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{caftm.outcome.value} at step {caftm.steps_done}")
    signum = caftm.stopped_by_signal  # preempted: exit as the signal would have (143, 130)
    return 0 if signum is None else 128 + signum


if __name__ == "__main__":
    sys.exit(main())
