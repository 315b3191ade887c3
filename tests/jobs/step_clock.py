"""A job clock driven by training progress, for the test workers (imported before caftm starts).

With ``$STEP_CLOCK_S`` set, a worker's job clock reads ``START + steps_done * STEP_CLOCK_S``: the
grid's hour is a function of the job's progress, not of wall time, so a rotating trace's clean
site changes at the same steps however long a leg takes to start (Python, torch, Ray, torchrun)
or however busy the machine is. Every leg resumes at its checkpoint's step and so at the same
grid time. The refresher polls as if the clock ran ``$STEP_CLOCK_SPEED`` times faster than the
wall (every ``refresh_interval_s / speed`` wall seconds).

The worker reports the step time in its status (held: the supervisor follows it at 1× until the
next step, see :mod:`caftm.clock`). Without ``$STEP_CLOCK_S`` nothing changes (the job's
accelerated or real clock).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import caftm.clock
from caftm.clock import AcceleratedClock
from caftm.integrations.torch import CarbonAwareTraining

#: the trace's first hour (tests/jobs/jobs_support.START)
START_S = datetime(2026, 3, 1, tzinfo=UTC).timestamp()

_steps = [0]


class StepClock(AcceleratedClock):
    """Virtual time ``origin_s + steps_done * $STEP_CLOCK_S`` (``speed`` only paces the
    refresher's polls)."""

    def __call__(self) -> float:
        return self.origin_s + _steps[0] * _STEP_S

    def run(self) -> None:
        """Nothing: the steps drive this clock."""

    def hold(self) -> None:
        """Nothing: the steps drive this clock."""

    def to_env(self) -> str:
        """The step time now, held (what the supervisor follows: it goes on at 1× from here)."""
        return AcceleratedClock(self(), time.time(), self.speed, running=False).to_env()


_STEP_S = float(os.environ.get("STEP_CLOCK_S", "0"))


def _latest_step(url: str) -> int:
    """The newest complete checkpoint's step in ``url`` (rank 0's under DDP); 0: none."""
    import fsspec

    from caftm.checkpoint import CheckpointStore

    fs, root = fsspec.core.url_to_fs(url)
    for candidate in (f"{url.rstrip('/')}/rank-00000", url):
        if not fs.exists(f"{root.rstrip('/')}/rank-00000" if candidate != url else root):
            continue
        store = CheckpointStore(candidate, keep_last=None)
        try:
            info = store.latest()
        finally:
            store.close()
        if info is not None:
            return int(info.step)
    return 0


def install() -> None:
    """Drive the job clock by steps when ``$STEP_CLOCK_S`` is set (else do nothing)."""
    if _STEP_S <= 0:
        return
    url = os.environ.get("CAFTM_CHECKPOINT_URL")
    _steps[0] = _latest_step(url) if url else 0
    clock = StepClock(START_S, 0.0, float(os.environ.get("STEP_CLOCK_SPEED", "30000")))

    def job_clock(env: Any = None) -> Callable[[], float]:
        return clock

    caftm.clock.job_clock = job_clock  # type: ignore[assignment]
    step = CarbonAwareTraining.step

    def counted_step(self: CarbonAwareTraining) -> None:
        _steps[0] = self.steps_done + 1  # the step being completed, before caftm checks it
        step(self)

    CarbonAwareTraining.step = counted_step  # type: ignore[method-assign]
