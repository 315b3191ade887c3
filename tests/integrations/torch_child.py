"""One segment of the plain-PyTorch scenario run: resume from the store, train until the
controller moves the job or training ends, write the parameters, print the outcome as JSON.

Run as a script (a fresh process) or call :func:`run_segment` in-process.

    python torch_child.py STORE PARAMS_OUT --site site-a --switch 5,12,23
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import integ_procs as ip
import integ_scenario as sc
import integ_workloads as wl
import torch
from torch.utils.data import DataLoader

from caftm.checkpoint import CheckpointStore, ResumableSampler
from caftm.integrations.torch import CarbonAwareTraining

TOTAL_STEPS = 30


def run_segment(
    store_dir: Path,
    site: str,
    switch_steps: tuple[int, ...],
    *,
    policy: str = "caftm",
    every: int | None = None,
    crash_at: int | None = None,
    unsaved_scheduler: bool = False,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Train one segment; returns (outcome, parameters). ``unsaved_scheduler``: the scheduler
    is not given to CarbonAwareTraining (opted out), so it restarts at a resume."""
    wl.deterministic()
    config = sc.make_config(store_dir, site=site, total_steps=TOTAL_STEPS, policy=policy)
    store = CheckpointStore(store_dir, keep_last=2)
    latest = store.latest()
    clock = sc.VirtualClock(latest.step if latest else 0)
    controller, refresher = sc.make_controller(config, sc.make_trace(switch_steps), clock)
    dataset = wl.make_dataset()
    sampler = ResumableSampler(len(dataset), shuffle=True, seed=3)
    loader = DataLoader(
        dataset, batch_size=wl.BATCH_SIZE, sampler=sampler, generator=torch.Generator()
    )
    model = wl.make_model()
    optimizer, scheduler = wl.make_optimizer(model)
    with CarbonAwareTraining(
        config,
        model=model,
        optimizer=optimizer,
        scheduler=None if unsaved_scheduler else scheduler,
        allow_unsaved_state=unsaved_scheduler,
        sampler=sampler,
        store=store,
        controller=controller,
        gpu=None,
        refresher_thread=False,
        checkpoint_every_steps=every,
    ) as caftm:
        while caftm.running:
            for images, labels in loader:
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(images), labels)
                loss.backward()
                optimizer.step()
                scheduler.step()
                clock.at_step(caftm.steps_done + 1)  # the trace column of this step
                refresher.refresh_once()
                caftm.step()
                if caftm.steps_done == crash_at:
                    os.kill(os.getpid(), signal.SIGKILL)  # a crash: no clean-up at all
                if not caftm.running:
                    break
    request = caftm.stop_request
    result = {
        "start_step": caftm.start_step,
        "steps_done": caftm.steps_done,
        "outcome": caftm.outcome.value,
        "dest": request.dest if request else None,
        "until_s": request.until_s if request else None,
    }
    return result, wl.parameters_of(model)


def main(argv: list[str]) -> None:
    parser = ip.child_parser()
    parser.add_argument("--every", type=int, default=None)
    parser.add_argument("--crash-at", type=int, default=None)
    args = parser.parse_args(argv)
    result, params = run_segment(
        args.store, args.site, args.switch, every=args.every, crash_at=args.crash_at
    )
    ip.child_report(result, params, args.params_out)


if __name__ == "__main__":
    main(sys.argv[1:])
