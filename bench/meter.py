"""Cost of the energy meter to the training loop: ``read_overhead_us`` (target <= 5 µs per step).

Each step runs one simulated training step (``run_steps(0, 1)`` on the SIMULATED H100 backend, in
virtual time); the metered loop also opens and closes an energy window around it (``begin`` /
``end``) while the meter's background thread samples every 50 ms. Loops of the same length with
and without the meter alternate; the overhead per step is the difference of their times, and
``read_overhead_us`` is its median over the repeats. The windows' energies are read afterwards
(off the step path) and checked against the simulated device's own counter.
"""

from __future__ import annotations

import statistics
import time

from caftm.gpu.meter import EnergyMeter, Sampling, Source, WindowResult
from caftm.gpu.simulated import SimulatedBackend

STEPS = 2_000
REPEATS = 15
INTERVAL_S = 0.05


def _empty_loop(backend: SimulatedBackend, steps: int) -> float:
    started = time.perf_counter()
    for _ in range(steps):
        backend.run_steps(0, 1)
    return time.perf_counter() - started


def _metered_loop(
    backend: SimulatedBackend, meter: EnergyMeter, steps: int, out: list[WindowResult]
) -> float:
    begin, end = meter.begin, meter.end
    started = time.perf_counter()
    for _ in range(steps):
        begin("step")
        backend.run_steps(0, 1)
        out.append(end("step"))
    return time.perf_counter() - started


def _overhead_us(sampling: Sampling, source: Source) -> tuple[float, float, float, float]:
    """(median overhead µs/step, empty-loop µs/step, relative energy error, max window lag s)."""
    backend = SimulatedBackend("resnet50", noise_rel=0.0)
    meter = EnergyMeter(backend, interval_s=INTERVAL_S, sampling=sampling, source=source)
    overheads: list[float] = []
    empties: list[float] = []
    results: list[WindowResult] = []
    with meter:
        _empty_loop(backend, STEPS)  # warm-up
        for _ in range(REPEATS):
            empty_s = _empty_loop(backend, STEPS)
            batch: list[WindowResult] = []
            metered_s = _metered_loop(backend, meter, STEPS, batch)
            results.extend(batch)
            empties.append(empty_s / STEPS * 1e6)
            overheads.append((metered_s - empty_s) / STEPS * 1e6)
        last = results[-1]
    metered_j = sum(r.energy_j for r in results)
    true_j = sum(r.time_s for r in results) * backend.true_step(0)[1]
    return (
        statistics.median(overheads),
        statistics.median(empties),
        abs(metered_j - true_j) / true_j,
        float(last.end_s or 0.0),
    )


def run() -> dict[str, float | int | str | bool]:
    thread_us, empty_us, thread_err, _ = _overhead_us("thread", "counter")
    power_us, _, _, _ = _overhead_us("thread", "power")
    edges_us, _, edges_err, _ = _overhead_us("edges", "counter")
    return {
        "read_overhead_us": round(thread_us, 3),
        "read_overhead_us_power_source": round(power_us, 3),
        "edge_sampling_overhead_us": round(edges_us, 3),
        "empty_step_us": round(empty_us, 3),
        "overhead_over_empty_step": round(thread_us / empty_us, 4),
        "energy_rel_error_thread": float(f"{thread_err:.3g}"),
        "energy_rel_error_edges": float(f"{edges_err:.3g}"),
        "steps_per_repeat": STEPS,
        "repeats": REPEATS,
        "interval_s": INTERVAL_S,
        "backend": "simulated (SIMULATED H100, virtual time)",
        "target_read_overhead_us": 5.0,
        "meets_target": thread_us <= 5.0,
    }
