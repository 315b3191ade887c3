"""A Lightning worker for the supervisor tests: the demo CNN under ``CarbonAwareCallback``, its
checkpoints in the store the supervisor names, its controller from the job file.

    python lightning_worker.py --config JOB.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from typing import Any

import lightning.pytorch as pl
import torch

from caftm.checkpoint import CheckpointStore, ResumableSampler
from caftm.checkpoint.owner import JobIdentity
from caftm.control import ControllerConfig
from caftm.control.controller import Controller
from caftm.demo.worker import make_data, make_model
from caftm.integrations import ControllerSession
from caftm.integrations.lightning import CarbonAwareCallback, ResumableDataLoader


class DemoCNN(pl.LightningModule):
    """The demo's CNN with plain SGD."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_model()

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        return torch.nn.functional.cross_entropy(self.net(images), labels)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.net.parameters(), lr=0.05)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    config = ControllerConfig.from_yaml(args.config)
    store = CheckpointStore(config.checkpoint.url, keep_last=2, owner=JobIdentity.from_env())
    callback = CarbonAwareCallback(ControllerSession(Controller.from_config(config)), store)
    data = make_data()
    loader = ResumableDataLoader(data, batch_size=32, sampler=ResumableSampler(len(data), seed=1))
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=config.total_steps or -1, logger=False,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        callbacks=[callback], plugins=[callback.checkpoint_io],
    )  # fmt: skip
    trainer.fit(DemoCNN(), loader, ckpt_path=callback.resume_path())
    return 0


if __name__ == "__main__":
    sys.exit(main())
