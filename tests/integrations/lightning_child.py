"""One segment of the Lightning scenario run (see torch_child.py for the shape).

python lightning_child.py STORE PARAMS_OUT --site site-a --switch 5,12,23
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import integ_procs as ip
import integ_scenario as sc
import integ_workloads as wl
import lightning.pytorch as pl
import torch

from caftm.checkpoint import CheckpointStore, ResumableSampler
from caftm.integrations import ControllerSession
from caftm.integrations.lightning import CarbonAwareCallback, ResumableDataLoader
from caftm.signals.refresher import IntensityRefresher

TOTAL_STEPS = 30


class LitCNN(pl.LightningModule):
    """The tiny CNN with SGD + a per-step StepLR."""

    def __init__(self) -> None:
        super().__init__()
        self.net = wl.make_model()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return torch.nn.functional.cross_entropy(self.net(images), labels)

    def configure_optimizers(self) -> Any:
        optimizer, scheduler = wl.make_optimizer(self.net)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


class DriveTrace(pl.Callback):
    """Moves virtual time to the trace column of each step and polls (the refresher's thread,
    made deterministic). Placed before the caftm callback."""

    def __init__(self, clock: sc.VirtualClock, refresher: IntensityRefresher) -> None:
        self.clock, self.refresher = clock, refresher

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.clock.at_step(trainer.global_step)
        self.refresher.refresh_once()


def run_segment(
    store_dir: Path, site: str, switch_steps: tuple[int, ...]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Train one segment; returns (outcome, parameters)."""
    wl.deterministic()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    config = sc.make_config(store_dir, site=site, total_steps=TOTAL_STEPS)
    store = CheckpointStore(store_dir, keep_last=2)
    latest = store.latest()
    clock = sc.VirtualClock(latest.step if latest else 0)
    controller, refresher = sc.make_controller(config, sc.make_trace(switch_steps), clock)
    callback = CarbonAwareCallback(ControllerSession(controller, refresher_thread=False), store)
    dataset = wl.make_dataset()
    sampler = ResumableSampler(len(dataset), shuffle=True, seed=3)
    loader = ResumableDataLoader(dataset, batch_size=wl.BATCH_SIZE, sampler=sampler)
    module = LitCNN()
    trainer = pl.Trainer(
        accelerator="cpu",
        deterministic=True,
        max_steps=TOTAL_STEPS,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        callbacks=[DriveTrace(clock, refresher), callback],
        plugins=[callback.checkpoint_io],
    )
    start_step = latest.step if latest else 0
    trainer.fit(module, loader, ckpt_path=callback.resume_path())
    request = callback.stop_request
    result = {
        "start_step": start_step,
        "steps_done": trainer.global_step,
        "outcome": request.outcome.value if request else "completed",
        "dest": request.dest if request else None,
    }
    return result, wl.parameters_of(module.net)


def main(argv: list[str]) -> None:
    args = ip.child_parser().parse_args(argv)
    ip.child_report(*run_segment(args.store, args.site, args.switch), args.params_out)


if __name__ == "__main__":
    main(sys.argv[1:])
