"""Cost of ``Controller.step()`` in Tolerance, against an empty call measured in the same run.

Set-up: a CAFTM controller in Tolerance over a constant SYNTHETIC intensity series (below θ, so
every step is the constant-time check), no GPU optimiser, the real wall clock. Calls are timed in
unrolled groups of 10 with ``perf_counter_ns`` (per-call time = group time / 10); the same timing
wraps a no-op function call as the baseline, interleaved in blocks so both see the same load.

step_overhead_us_median = median(step) − median(no-op call), µs (target ≤ 5). A group that
includes a periodic slow-path re-check (1 step in ``check_every_steps`` = 100) is an outlier.
step_overhead_us_amortised = (time of 100k steps − time of 100k no-op calls) / 100k, µs: it
includes the periodic slow-path re-checks (every ``check_every_steps``).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

import numpy as np

from caftm.control import CAFTM, Controller
from caftm.records import State
from caftm.signals.base import Kind
from caftm.signals.refresher import IntensityRefresher
from caftm.signals.traces import TraceSource

BLOCKS = 40
GROUPS_PER_BLOCK = 1_000
GROUP = 10  # calls timed together (unrolled), so the timer's own cost is spread
AMORTISED_CALLS = 100_000


def _controller() -> Controller:
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    source = TraceSource(
        ["X"],
        start,
        3600,
        np.full((1, 48), 200.0),
        kind=Kind.SYNTHETIC,
        label="synthetic constant series (benchmark)",
    )
    refresher = IntensityRefresher(source, {"X": "X"}, "X")
    controller = Controller(CAFTM(), refresher)
    controller.start(run_refresher_thread=False)
    if controller.state is not State.TOLERANCE:
        raise RuntimeError(f"benchmark set-up left the controller in {controller.state}")
    return controller


def _noop() -> State:
    return State.TOLERANCE


def _per_call_ns(fn: object, n: int) -> list[float]:
    """Per-call time of ``n`` groups of ``GROUP`` back-to-back calls (ns per call)."""
    call = fn  # local for speed
    clock = time.perf_counter_ns
    out = [0.0] * n
    for i in range(n):
        t0 = clock()
        call()  # type: ignore[operator]
        call()  # type: ignore[operator]
        call()  # type: ignore[operator]
        call()  # type: ignore[operator]
        call()  # type: ignore[operator]
        call()  # type: ignore[operator]
        call()  # type: ignore[operator]
        call()  # type: ignore[operator]
        call()  # type: ignore[operator]
        call()  # type: ignore[operator]
        out[i] = (clock() - t0) / GROUP
    return out


def _batch_s(fn: object, n: int) -> float:
    call = fn
    t0 = time.perf_counter()
    for _ in range(n):
        call()  # type: ignore[operator]
    return time.perf_counter() - t0


def run() -> dict[str, float | int | str | bool]:
    controller = _controller()
    step_ns: list[float] = []
    noop_ns: list[float] = []
    for _ in range(BLOCKS):
        step_ns += _per_call_ns(controller.step, GROUPS_PER_BLOCK)
        noop_ns += _per_call_ns(_noop, GROUPS_PER_BLOCK)
    step_median_us = statistics.median(step_ns) / 1e3
    noop_median_us = statistics.median(noop_ns) / 1e3
    batch_step = min(_batch_s(controller.step, AMORTISED_CALLS) for _ in range(3))
    batch_noop = min(_batch_s(_noop, AMORTISED_CALLS) for _ in range(3))
    state = controller.state
    controller.close()
    overhead = step_median_us - noop_median_us
    return {
        "step_overhead_us_median": round(max(overhead, 0.0), 4),
        "step_us_median_raw": round(step_median_us, 4),
        "noop_call_us_median_raw": round(noop_median_us, 4),
        "step_us_p99_raw_per_group": round(float(np.percentile(step_ns, 99)) / 1e3, 4),
        "step_overhead_us_amortised": round((batch_step - batch_noop) / AMORTISED_CALLS * 1e6, 4),
        "calls_timed": len(step_ns) * GROUP,
        "state_during_bench": state.value,
        "target_us": 5.0,
        "meets_target": overhead <= 5.0,
        "signals": "synthetic constant series",
    }
