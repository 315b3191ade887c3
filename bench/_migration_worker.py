"""Worker of the migration benchmark: a model holding ``--mb`` MB of parameters trained under
CarbonAwareTraining; it writes wall-clock marks the benchmark reads:

* ``save-<step>``: when a checkpoint of that step starts being written (the source's suspend);
* ``saved-<step>``: when it is complete;
* ``first-step``: when the first step after a restore ends (the destination's first step);
* ``leg-first-step-<start step>``: when a leg's first step ends (restored or not);
* ``built-<pid>``: when a worker has its model built (a standby then waits for its go);
* ``left-<start step>``: when a leg's worker has left training (its ``with`` block closed: its
  session and ledger closed, its outcome written), just before its interpreter exits;
* ``restored-<pid>``: when a worker has restored its checkpoint (before its first step);
* ``cpu-built-<pid>``, ``cpu-restored-<pid>``: the worker's CPU seconds (all its threads) at
  those moments; ``cpu-save-<step>``: the CPU seconds its checkpoint of that step took.

    python _migration_worker.py --config JOB.yaml --mb 1024 --marks DIR
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from caftm.control import ControllerConfig
from caftm.integrations.torch import CarbonAwareTraining

CHUNK_BYTES = 64 * 2**20


class Blob(torch.nn.Module):
    """``total_bytes`` of float32 parameters in 64 MiB tensors (the same values every run)."""

    def __init__(self, total_bytes: int) -> None:
        super().__init__()
        count, rest = divmod(total_bytes, CHUNK_BYTES)
        sizes = [CHUNK_BYTES] * count + ([rest] if rest else [])
        gen = torch.Generator().manual_seed(0)
        self.chunks = torch.nn.ParameterList(
            torch.nn.Parameter(torch.rand(size // 4, generator=gen), requires_grad=False)
            for size in sizes
        )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--mb", type=float, required=True)
    parser.add_argument("--marks", type=Path, required=True)
    args = parser.parse_args()
    config = ControllerConfig.from_yaml(args.config)
    model = Blob(int(args.mb * 1e6))
    (args.marks / f"built-{os.getpid()}").write_text(repr(time.time()))  # ready to restore
    (args.marks / f"cpu-built-{os.getpid()}").write_text(repr(time.process_time()))
    with CarbonAwareTraining(config, model=model) as caftm:
        save = caftm.save

        def marked_save() -> None:
            (args.marks / f"save-{caftm.steps_done}").write_text(repr(time.time()))
            cpu = time.process_time()
            save()
            (args.marks / f"saved-{caftm.steps_done}").write_text(repr(time.time()))
            cpu_s = time.process_time() - cpu
            (args.marks / f"cpu-save-{caftm.steps_done}").write_text(repr(cpu_s))

        caftm.save = marked_save  # type: ignore[method-assign]
        resumed = caftm.start_step > 0
        if resumed:
            (args.marks / f"restored-{os.getpid()}").write_text(repr(time.time()))
            (args.marks / f"cpu-restored-{os.getpid()}").write_text(repr(time.process_time()))
        first = True
        while caftm.running:
            model.chunks[0].data[0] += 1.0  # a "training step": the state changes
            caftm.step()
            if first:
                (args.marks / f"leg-first-step-{caftm.start_step}").write_text(repr(time.time()))
                first = False
            if resumed:
                (args.marks / "first-step").write_text(repr(time.time()))
                resumed = False
    (args.marks / f"left-{caftm.start_step}").write_text(repr(time.time()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
