"""One rank of the 2-process DDP scenario run (gloo on CPU). Runs ``--segments`` segments in a
row in this process (each rebuilt from the store, as a restart would), then exits.

    python ddp_child.py STORE PARAMS_OUT --rank R --world 2 --init file:///tmp/pg --segments 2
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import integ_scenario as sc
import integ_workloads as wl
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from caftm.checkpoint import CheckpointStore, ResumableSampler
from caftm.integrations.torch import CarbonAwareTraining

TOTAL_STEPS = 20


def run_segment(
    store_dir: Path, site: str, switch_steps: tuple[int, ...]
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    rank = dist.get_rank()
    wl.deterministic(wl.MODEL_SEED + rank)  # ranks draw different dropout masks
    config = sc.make_config(store_dir, site=site, total_steps=TOTAL_STEPS)
    controller = refresher = clock = None
    if rank == 0:
        latest = CheckpointStore(f"{store_dir}/rank-00000").latest()
        clock = sc.VirtualClock(latest.step if latest else 0)
        controller, refresher = sc.make_controller(config, sc.make_trace(switch_steps), clock)
    dataset = wl.make_dataset()
    sampler = ResumableSampler(
        len(dataset), shuffle=True, seed=3, rank=rank, world_size=dist.get_world_size()
    )
    loader = DataLoader(
        dataset, batch_size=wl.BATCH_SIZE, sampler=sampler, generator=torch.Generator()
    )
    model = wl.make_model()
    ddp_model = DistributedDataParallel(model)
    optimizer, scheduler = wl.make_optimizer(model)
    with CarbonAwareTraining(
        config,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        sampler=sampler,
        controller=controller,
        gpu=None,
        refresher_thread=False,
        use_ledger=False,
    ) as caftm:
        while caftm.running:
            for images, labels in loader:
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(ddp_model(images), labels).backward()
                optimizer.step()
                scheduler.step()
                if clock is not None and refresher is not None:
                    clock.at_step(caftm.steps_done + 1)
                    refresher.refresh_once()
                caftm.step()
                if not caftm.running:
                    break
    request = caftm.stop_request
    result = {
        "rank": rank,
        "start_step": caftm.start_step,
        "steps_done": caftm.steps_done,
        "outcome": caftm.outcome.value,
        "dest": request.dest if request else None,
    }
    return result, wl.parameters_of(model)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("store", type=Path)
    parser.add_argument("params_out", type=Path)
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--init", required=True)
    parser.add_argument("--site", default="site-a")
    parser.add_argument("--switch", default="")
    parser.add_argument("--segments", type=int, default=1)
    args = parser.parse_args(argv)
    switch = tuple(int(s) for s in args.switch.split(",") if s)
    dist.init_process_group(
        "gloo",
        init_method=args.init,
        rank=args.rank,
        world_size=args.world,
        timeout=timedelta(seconds=60),
    )
    try:
        site, results = args.site, []
        for _ in range(args.segments):
            result, params = run_segment(args.store, site, switch)
            results.append(result)
            # only rank 0 knows the destination; a real executor would restart every rank there
            site = result["dest"] or site
        # both ranks finish before either tears gloo down: a rank whose peer has already gone
        # can abort ("terminate called without an active exception")
        dist.barrier()
    finally:
        dist.destroy_process_group()
    save_file(params, str(args.params_out))
    print(json.dumps({"results": results, "site": site}))


if __name__ == "__main__":
    main(sys.argv[1:])
