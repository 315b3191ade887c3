"""A two-rank DDP worker (gloo, CPU) for ``torchrun``: the demo CNN under CarbonAwareTraining.

torchrun --standalone --nproc-per-node 2 ddp_worker.py --config JOB.yaml
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import step_clock
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from caftm.checkpoint import ResumableSampler
from caftm.control import ControllerConfig
from caftm.demo.worker import make_data, make_model
from caftm.integrations.torch import CarbonAwareTraining


def main() -> int:
    step_clock.install()
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    config = ControllerConfig.from_yaml(args.config)
    data = make_data()
    sampler = ResumableSampler(len(data), shuffle=True, seed=1, rank=rank, world_size=world)
    loader = DataLoader(data, batch_size=16, sampler=sampler, generator=torch.Generator())
    model = make_model()
    torch.manual_seed(100 + rank)  # ranks draw different dropout masks
    ddp_model = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    pace_s = float(os.environ.get("PACE_S", "0"))  # a slower GPU: see paced_worker.py
    with CarbonAwareTraining(
        config, model=model, optimizer=optimizer, sampler=sampler, checkpoint_every_steps=50
    ) as caftm:
        while caftm.running:
            for images, labels in loader:
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(ddp_model(images), labels).backward()
                optimizer.step()
                time.sleep(pace_s)
                caftm.step()
                if not caftm.running:
                    break
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
