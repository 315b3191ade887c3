"""The demo worker for the job tests, with three test-only controls set by environment:

- ``$PACE_S``: each step takes at least this long (s), a slower GPU;
- ``$GATE_STEP`` and ``$GATE_FILE``: before completing step ``GATE_STEP`` the worker writes
  ``GATE_FILE`` ("reached", with its pid) and waits until ``GATE_FILE.open`` exists, so a test
  acts on a worker known to be mid-step at that step (kill it, signal it, cancel it) without
  sleeping; once ``GATE_FILE`` exists, later legs pass the gate without stopping;
- ``$STEP_CLOCK_S``: the job clock follows the steps (see :mod:`step_clock`);
- ``$START_DELAY_S``: the worker sleeps this long before it starts (a slow start on a busy
  machine).

    python paced_worker.py --config JOB.yaml --checkpoint-every N
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import step_clock

from caftm.demo.worker import main
from caftm.integrations.torch import CarbonAwareTraining

_PACE_S = float(os.environ.get("PACE_S", "0"))
_GATE_STEP = int(os.environ.get("GATE_STEP", "0"))
_GATE = Path(os.environ["GATE_FILE"]) if os.environ.get("GATE_FILE") else None
_step = CarbonAwareTraining.step
_last = [time.monotonic()]


def _wait_at_gate(step: int) -> None:
    if _GATE is None or step != _GATE_STEP or _GATE.exists():
        return
    _GATE.write_text(f"{os.getpid()}\n", encoding="utf-8")
    opened = _GATE.with_name(_GATE.name + ".open")
    deadline = time.monotonic() + 300
    while not opened.exists() and time.monotonic() < deadline:
        time.sleep(0.01)


def _paced_step(self: CarbonAwareTraining) -> None:
    wait = _PACE_S - (time.monotonic() - _last[0])
    if wait > 0:
        time.sleep(wait)
    _wait_at_gate(self.steps_done + 1)
    _last[0] = time.monotonic()
    _step(self)


CarbonAwareTraining.step = _paced_step  # type: ignore[method-assign]
step_clock.install()

if __name__ == "__main__":
    time.sleep(float(os.environ.get("START_DELAY_S", "0")))
    sys.exit(main())
