"""Carbon-aware training of a small CNN in plain PyTorch, on the CPU in a few seconds.

The job starts in Korea (KR, about 490 gCO2eq/kWh) with θ = 400 g/kWh: the controller suspends it,
takes a complete checkpoint and moves it to France (FR, about 100 g/kWh). This script plays the
executor too: it restarts the job "at" the destination from the checkpoint, and training carries
on exactly where it stopped. The job declares no total length, so the controller weighs a move
over its 24 h horizon. Intensities come from caftm's embedded typical-year profiles (derived from
Electricity Maps 2022 data); without an NVIDIA GPU the GPU is SIMULATED, and the output says so.

    python examples/train_cnn.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from caftm.checkpoint import ResumableSampler
from caftm.control import ControllerConfig
from caftm.errors import CaftmError
from caftm.integrations import Outcome
from caftm.integrations.torch import CarbonAwareTraining

TOTAL_STEPS = 120


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


def run_segment(workdir: Path, site: str) -> tuple[CarbonAwareTraining, float]:
    """Start (or resume) the job at ``site`` and train until it ends or is moved."""
    config = ControllerConfig.from_dict(
        {
            "sites": ["KR", "FR"],
            "site": site,
            "threshold": {"mode": "absolute", "value_g_per_kwh": 400},
            "policy": {"name": "caftm", "min_dwell_s": 0},
            "checkpoint": {"url": str(workdir / "checkpoints"), "keep_last": 2},
            "gpu": {"steps_per_probe": 5, "max_probes": 4, "window_steps": 20},
            "ledger": {"path": str(workdir / "ledger.sqlite"), "run_name": "train_cnn"},
        }
    )
    data = make_data()
    sampler = ResumableSampler(len(data), shuffle=True, seed=1)
    loader = DataLoader(data, batch_size=32, sampler=sampler, generator=torch.Generator())
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = torch.tensor(float("nan"))
    with CarbonAwareTraining(
        config,
        model=model,
        optimizer=optimizer,
        sampler=sampler,
        gpu="auto",
        knob_state_dir=workdir / "knob",
    ) as caftm:
        if caftm.gpu is not None:
            print(caftm.gpu.describe())
        print(f"[{site}] starting at step {caftm.start_step}")
        while caftm.running and caftm.steps_done < TOTAL_STEPS:
            for images, labels in loader:
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(images), labels)
                loss.backward()
                optimizer.step()
                caftm.step()
                if not caftm.running or caftm.steps_done >= TOTAL_STEPS:
                    break
    return caftm, loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="caftm-example-"))
    torch.set_num_threads(1)  # a small model: threads cost more than they give
    started = time.perf_counter()
    site = "KR"
    for _ in range(5):  # the executor's restarts
        caftm, loss = run_segment(workdir, site)
        request = caftm.stop_request
        if caftm.outcome is Outcome.MOVED and request is not None and request.dest:
            print(f"[{site}] step {caftm.steps_done}: checkpointed, moving to {request.dest}")
            site = request.dest
        elif caftm.outcome is Outcome.PAUSED and request is not None:
            print(f"[{site}] step {caftm.steps_done}: checkpointed, paused (restart later)")
            break
        else:
            print(f"[{site}] finished {caftm.steps_done} steps, last loss {loss:.3f}")
            break
    if caftm.simulated_gpu:
        print("note: the GPU was SIMULATED (no NVIDIA GPU found); its settings had no real effect")
    print(f"checkpoints and ledger in {workdir} ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    try:
        main()
    except CaftmError as error:  # bad input or a failed save: one line, exit code 2
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
