"""A Hugging Face worker for the supervisor tests: the demo CNN under
``CarbonAwareTrainerCallback``, its checkpoints in the store the supervisor names, its
controller from the job file.

    python hf_worker.py --config JOB.yaml
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch
from torch.utils.data import Dataset
from transformers import PrinterCallback, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

from caftm.checkpoint import CheckpointStore
from caftm.checkpoint.owner import JobIdentity
from caftm.control import ControllerConfig
from caftm.control.controller import Controller
from caftm.demo.worker import make_data, make_model
from caftm.integrations import ControllerSession
from caftm.integrations.huggingface import CarbonAwareTrainerCallback


class Images(Dataset):  # type: ignore[type-arg]
    """The demo's images as the dicts a Trainer expects."""

    def __init__(self) -> None:
        self.data = make_data()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        images, labels = self.data[index]
        return {"images": images, "labels": labels}


class DemoCNN(torch.nn.Module):
    """The demo's CNN returning a loss."""

    def __init__(self) -> None:
        super().__init__()
        self.net = make_model()

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(images)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    config = ControllerConfig.from_yaml(args.config)
    store = CheckpointStore(config.checkpoint.url, keep_last=2, owner=JobIdentity.from_env())
    callback = CarbonAwareTrainerCallback(ControllerSession(Controller.from_config(config)), store)
    with tempfile.TemporaryDirectory() as scratch:
        training = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=32, max_steps=config.total_steps or -1,
            learning_rate=0.05, seed=1, report_to=[], use_cpu=True, dataloader_num_workers=0,
            save_strategy="no", logging_strategy="no", disable_tqdm=True,
        )  # fmt: skip
        trainer = Trainer(model=DemoCNN(), args=training, train_dataset=Images(),
                          callbacks=[callback])  # fmt: skip
        trainer.remove_callback(PrinterCallback)
        trainer.train(resume_from_checkpoint=callback.resume_checkpoint(scratch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
