"""Train a small CNN with checkpoints; stop it any time (Ctrl-C, kill -9) and run it again.

    python examples/resume_cnn.py --store /tmp/cnn-ckpt --steps 300
    python examples/resume_cnn.py --store /tmp/cnn-ckpt --steps 300   # continues where it stopped

The data are generated (random 1x16x16 images, 10 classes, fixed seed): a synthetic dataset,
only there to show checkpointing. A run interrupted and resumed ends with exactly the same
weights as one that never stopped. ``--store`` also takes ``s3://bucket/prefix``.
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from caftm.checkpoint import CheckpointStore, ResumableSampler, TrainingState
from caftm.errors import CaftmError, CheckpointError, ConfigError


def build(
    total_steps: int,
) -> tuple[nn.Module, TrainingState, DataLoader[tuple[torch.Tensor, ...]]]:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1234)
    dataset = TensorDataset(
        torch.randn(512, 1, 16, 16, generator=generator),
        torch.randint(0, 10, (512,), generator=generator),
    )
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * 8 * 8, 10),
    )  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    sampler = ResumableSampler(len(dataset), shuffle=True, seed=7)
    # the loader's own generator keeps iterator creation from consuming the global RNG
    loader = DataLoader(dataset, batch_size=16, sampler=sampler, generator=torch.Generator())
    state = TrainingState(
        model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler, extra={"loss": 0.0}
    )
    return model, state, loader


def check_writable(url: str) -> None:
    """Write and remove a small probe file in the store, so a store that cannot be written is
    found before any training.

    Raises:
        CheckpointError: the store cannot be written (the message names it and why).
    """
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    probe = f"{path.rstrip('/')}/.caftm-write-probe"
    try:
        fs.makedirs(path, exist_ok=True)
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except OSError as e:
        raise CheckpointError(
            f"--store {url} cannot be written ({e.strerror or e}); pick a writable place"
        ) from e


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="checkpoint directory or s3:// URL")
    parser.add_argument("--steps", type=int, default=300, help="train up to this step (>= 1)")
    parser.add_argument("--every", type=int, default=25, help="checkpoint every N steps (>= 1)")
    args = parser.parse_args()
    for option, value in (("--steps", args.steps), ("--every", args.every)):
        if value < 1:
            raise ConfigError(f"{option} {value}: give a whole number of steps >= 1")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    torch.use_deterministic_algorithms(True)

    model, state, loader = build(args.steps)
    with CheckpointStore(args.store, keep_last=3) as store:
        info = store.restore_latest(state)
        check_writable(args.store)  # before training, not after it
        step = info.step if info else 0
        print(f"starting at step {step} (synthetic data)")
        while step < args.steps:
            for images, labels in loader:
                loss = nn.functional.cross_entropy(model(images), labels)
                state.optimizer.zero_grad()  # type: ignore[union-attr]
                loss.backward()
                state.optimizer.step()  # type: ignore[union-attr]
                state.scheduler.step()  # type: ignore[union-attr]
                state.extra["loss"] = loss.item()
                step += 1
                if step % args.every == 0 or step == args.steps:
                    store.save_async(state, step=step)  # training continues during the write
                if step >= args.steps:
                    break
    checksum = sum(float(p.double().sum()) for p in model.parameters())
    print(f"done at step {step}: last loss {state.extra['loss']:.4f}, weight checksum {checksum!r}")


if __name__ == "__main__":
    try:
        main()
    except CaftmError as error:  # bad input or a failed save: one line, exit code 2
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
