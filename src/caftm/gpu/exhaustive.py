"""The Zeus-style baseline: profile every supported setting for N steps, keep the cheapest.

Used by ``caftm gpu profile`` (:func:`sweep`) and as the comparison in ``bench/optimizer.py``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from caftm.errors import ConfigError
from caftm.gpu.base import GpuBackend, KnobKind, Measurement
from caftm.gpu.cost import CostWeights, step_cost
from caftm.gpu.simulated import VirtualGpuBackend

__all__ = ["ExhaustiveResult", "exhaustive_search", "sweep"]

log = logging.getLogger(__name__)

#: Zeus profiles each power limit for 10 warm-up + 40 measured steps.
ZEUS_STEPS_PER_SETTING = 50


@dataclass(frozen=True, slots=True)
class ExhaustiveResult:
    """Outcome of an exhaustive search.

    Attributes:
        best: the setting with the lowest measured cost (MHz or W).
        measurements: one window per setting, in the order profiled.
        costs: measured cost per setting, gCO2eq per step (see :mod:`caftm.gpu.cost`).
        steps_used: training steps spent profiling.
    """

    best: float
    measurements: tuple[Measurement, ...]
    costs: dict[float, float]
    steps_used: int


def exhaustive_search(
    measure: Callable[[float, int], Measurement],
    settings: Sequence[float],
    weights: CostWeights,
    steps_per_setting: int = ZEUS_STEPS_PER_SETTING,
) -> ExhaustiveResult:
    """Profile every setting with ``measure(setting, steps)`` and pick the cheapest.

    Settings that break ``weights.max_slowdown`` (relative to the fastest-measured largest
    setting) are skipped when choosing.

    Raises:
        ConfigError: no settings, ``steps_per_setting`` < 1, or a window with a non-positive or
            non-finite time (or a negative or non-finite energy).
    """
    if not settings:
        raise ConfigError("exhaustive_search needs at least one setting")
    if steps_per_setting < 1:
        raise ConfigError(f"steps_per_setting must be >= 1, got {steps_per_setting}")
    ordered = sorted({float(s) for s in settings}, reverse=True)
    measurements = tuple(measure(s, steps_per_setting) for s in ordered)
    for m in measurements:
        if m.steps < 1 or not (0 < m.time_s < math.inf and 0 <= m.energy_j < math.inf):
            raise ConfigError(
                f"window at {m.setting:g} needs steps >= 1, a finite time > 0 s and a finite "
                f"energy >= 0 J; got {m.steps} steps, {m.time_s} s, {m.energy_j} J"
            )
    costs = {m.setting: step_cost(m.step_time_s, m.avg_power_w, weights) for m in measurements}
    allowed = list(costs)
    if weights.max_slowdown is not None:
        limit_s = (1.0 + weights.max_slowdown) * measurements[0].step_time_s
        allowed = [m.setting for m in measurements if m.step_time_s <= limit_s] or [ordered[0]]
    best = min(allowed, key=costs.__getitem__)
    log.debug("exhaustive search over %d settings chose %g", len(ordered), best)
    return ExhaustiveResult(
        best=best,
        measurements=measurements,
        costs=costs,
        steps_used=steps_per_setting * len(ordered),
    )


def sweep(
    backend: GpuBackend,
    index: int,
    knob: KnobKind,
    steps: int,
    *,
    run_window: Callable[[int], tuple[float, float]] | None = None,
    settings: Sequence[float] | None = None,
) -> list[Measurement]:
    """Apply every supported setting of ``knob`` in turn and measure a window of ``steps`` steps.

    Args:
        backend: the GPU backend (settings are applied with ``backend.set``).
        index: GPU index.
        knob: clock or power limit.
        steps: steps per setting.
        run_window: runs n steps at the applied setting and returns (time_s, energy_j); the
            default for virtual backends (simulated, replay) is their ``run_steps``; a real GPU
            needs the caller's workload.
        settings: subset to sweep (default: all supported); swept in descending order.

    Returns:
        One Measurement per setting, descending. The knob is reset afterwards, even on error.

    Raises:
        ConfigError: steps < 1, or no way to run a window on this backend. DeviceError: from the
            backend (unknown index, unsupported setting).
    """
    if steps < 1:
        raise ConfigError(f"sweep steps must be >= 1, got {steps}")
    if run_window is None:
        if not isinstance(backend, VirtualGpuBackend):
            raise ConfigError(
                f"backend {backend.name!r} cannot run training steps by itself; pass run_window"
            )
        virtual = backend

        def run_window(n: int) -> tuple[float, float]:
            return virtual.run_steps(index, n)

    chosen = sorted(
        settings if settings is not None else backend.supported(index, knob), reverse=True
    )
    out: list[Measurement] = []
    try:
        for setting in chosen:
            backend.set(index, knob, setting)
            time_s, energy_j = run_window(steps)
            out.append(Measurement(knob, float(setting), steps, time_s, energy_j))
    finally:
        backend.reset(index, knob)
    return out
