"""Point look-ups of carbon intensity on a one-year hourly trace of 50 zones.

``lookups_per_s`` is the vectorised step-hold look-up (``TraceSource.lookup``) over 2,000,000
random (zone, time) points; the baseline measured in the same run is the scalar path
(``TraceSource.intensity``, one Reading per call) over 20,000 points.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from caftm.signals.profiles import ProfileSource
from caftm.signals.traces import TraceSource, load_trace

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CAFTM_SHARED_DATA", REPO.parent / "shared" / "data"))
CSV = DATA / "carbon" / "ci_2022_hourly_lca_123zones.csv"
N_ZONES = 50
N_VECTOR = 2_000_000
N_SCALAR = 20_000


def _trace() -> tuple[TraceSource, str]:
    if CSV.exists():
        full = load_trace(CSV)
        zones = full.zones()[:N_ZONES]
        return load_trace(CSV, zones=zones), f"real: {CSV.name} (first {N_ZONES} zones)"
    source = ProfileSource(seed=0)
    zones = source.zones()[:N_ZONES]
    return source.trace(2022, zones), f"synthetic typical-year profiles ({len(zones)} zones)"


def _best_rate(action, count: int, repeats: int = 5) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return count / best


def run() -> dict[str, float | int | str | bool]:
    trace, data = _trace()
    rng = np.random.default_rng(0)
    span_s = trace.step_s * trace.n_steps
    rows = rng.integers(0, len(trace.zones()), N_VECTOR)
    times = trace.start_s + rng.random(N_VECTOR) * span_s
    hold_rate = _best_rate(lambda: trace.lookup(rows, times), N_VECTOR)
    linear_rate = _best_rate(lambda: trace.lookup(rows, times, method="linear"), N_VECTOR)
    zones = trace.zones()
    scalar_points = [
        (zones[int(r)], datetime.fromtimestamp(float(t), UTC))
        for r, t in zip(rows[:N_SCALAR], times[:N_SCALAR], strict=True)
    ]

    def scalar() -> None:
        for zone, when in scalar_points:
            trace.intensity(zone, when)

    scalar_rate = _best_rate(scalar, N_SCALAR, repeats=2)
    check = trace.lookup(rows[:1000], times[:1000])
    scalar_check = [trace.intensity(z, w).intensity_g_per_kwh for z, w in scalar_points[:1000]]
    return {
        "data": data,
        "zones": len(zones),
        "steps": trace.n_steps,
        "lookups_per_s": round(hold_rate),
        "lookups_per_s_linear": round(linear_rate),
        "scalar_lookups_per_s": round(scalar_rate),
        "speedup_vs_scalar": round(hold_rate / scalar_rate, 1),
        "vector_equals_scalar": bool(np.allclose(check, scalar_check)),
        "target_lookups_per_s": 1_000_000,
        "meets_target": bool(hold_rate >= 1_000_000),
    }
