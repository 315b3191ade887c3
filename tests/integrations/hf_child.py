"""One segment of the Hugging Face Trainer scenario run (see torch_child.py for the shape).

python hf_child.py STORE PARAMS_OUT --site site-a --switch 5,12,23
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import integ_procs as ip
import integ_scenario as sc
import integ_workloads as wl
import torch
from torch.utils.data import Dataset
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.utils import logging as hf_logging

from caftm.checkpoint import CheckpointStore
from caftm.integrations import ControllerSession
from caftm.integrations.huggingface import CarbonAwareTrainerCallback
from caftm.signals.refresher import IntensityRefresher

TOTAL_STEPS = 30


class ImageDicts(Dataset):  # type: ignore[type-arg]
    """The generated images as the dicts a Trainer expects."""

    def __init__(self) -> None:
        self.data = wl.make_dataset()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        images, labels = self.data[index]
        return {"images": images, "labels": labels}


class CNNForTrainer(torch.nn.Module):
    """The tiny CNN returning a loss, as ``Trainer`` wants."""

    def __init__(self) -> None:
        super().__init__()
        self.net = wl.make_model()

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(images)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


class DriveTrace(TrainerCallback):  # type: ignore[misc]
    """Virtual time follows the steps; polls deterministically (before the caftm callback)."""

    def __init__(self, clock: sc.VirtualClock, refresher: IntensityRefresher) -> None:
        self.clock, self.refresher = clock, refresher

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.clock.at_step(state.global_step)
        self.refresher.refresh_once()


def run_segment(
    store_dir: Path, site: str, switch_steps: tuple[int, ...]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Train one segment; returns (outcome, parameters)."""
    wl.deterministic()
    hf_logging.set_verbosity_error()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    config = sc.make_config(store_dir, site=site, total_steps=TOTAL_STEPS)
    store = CheckpointStore(store_dir, keep_last=2)
    latest = store.latest()
    clock = sc.VirtualClock(latest.step if latest else 0)
    controller, refresher = sc.make_controller(config, sc.make_trace(switch_steps), clock)
    callback = CarbonAwareTrainerCallback(
        ControllerSession(controller, refresher_thread=False), store
    )
    model = CNNForTrainer()
    args = TrainingArguments(
        output_dir=str(store_dir.parent / f"{store_dir.name}-hf-output"),
        per_device_train_batch_size=wl.BATCH_SIZE,
        max_steps=TOTAL_STEPS,
        learning_rate=0.1,
        lr_scheduler_type="linear",
        seed=11,
        report_to=[],
        use_cpu=True,
        dataloader_num_workers=0,
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=ImageDicts(),
        callbacks=[DriveTrace(clock, refresher), callback],
    )
    trainer.remove_callback(PrinterCallback)  # keep stdout for the JSON outcome
    resume_dir = callback.resume_checkpoint(store_dir.parent / f"{store_dir.name}-resume")
    trainer.train(resume_from_checkpoint=resume_dir)
    request = callback.stop_request
    result = {
        "start_step": latest.step if latest else 0,
        "steps_done": trainer.state.global_step,
        "outcome": request.outcome.value if request else "completed",
        "dest": request.dest if request else None,
    }
    return result, wl.parameters_of(model.net)


def main(argv: list[str]) -> None:
    args = ip.child_parser().parse_args(argv)
    ip.child_report(*run_segment(args.store, args.site, args.switch), args.params_out)


if __name__ == "__main__":
    main(sys.argv[1:])
