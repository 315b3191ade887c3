"""What the optimiser bench can and cannot reach: bounds and measured window noise.

Used by ``bench/optimizer.py`` (files starting with ``_`` are helpers, not benchmarks).

- :func:`oracle_allocation` — the fewest profiling steps that separate the best setting from
  every setting more than ``tolerance`` worse, at ``z`` standard deviations, for an allocator that
  already knows the true costs (it only spends steps where they are needed; every setting still
  gets one ``min_steps`` window). Any method that measures settings independently needs at least
  about this many steps to be that sure; a real one needs more, since it must find the close pairs
  first. Even then some settings more than ``tolerance`` worse measure cheaper than the best by
  chance: their expected number is returned too.
- :func:`monotone_model_regret` — the regret of choosing by the best *monotone* fit of the true
  time and power profiles (time non-increasing, power non-decreasing in the power limit), i.e. with
  infinite data. If it exceeds the bar, no method that pools settings through a smooth or monotone
  model can meet it: the real profiles have bumps of several percent.
- :func:`zeus_window_noise` — relative scatter of the step time of Zeus's own profiling windows
  (40 measured steps each) at power limits that do not bind (power below 85% of the limit), where
  the true time is flat, scaled to a 20-step window.
- :func:`h100_block_noise` — the same for our H100 run (50-step blocks at one setting), from the
  consecutive differences (drift removed).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.optimize import isotonic_regression
from scipy.stats import norm

NOISE_REF_STEPS = 20
ZEUS_MEASURED_STEPS = 40


def cost_noise_rel(noise_rel: float, carbon_share: np.ndarray) -> np.ndarray:
    """Relative std of a 20-step window's measured cost when step time and power each carry
    ``noise_rel``; ``carbon_share`` is :func:`caftm.gpu.cost.power_share`."""
    return noise_rel * np.sqrt(1.0 + carbon_share**2)


def oracle_allocation(
    log_costs: np.ndarray,
    cost_noise: np.ndarray,
    *,
    z: float,
    tolerance: float = 0.02,
    min_steps: float = 5.0,
    max_best_steps: int = 20_000,
) -> tuple[float, float]:
    """Fewest steps for an allocator that knows the true log costs (see the module doc), and the
    expected number of settings more than ``tolerance`` worse that still measure cheaper than the
    best under that allocation (a union bound on the chance of a miss).

    Args:
        log_costs: true log cost per setting.
        cost_noise: relative std of a 20-step window's cost per setting.
        z: required separation in standard deviations of the difference.
        tolerance: settings at most this fraction worse than the best need no separation.
        min_steps: steps every setting gets anyway (one short window).
        max_best_steps: search limit for the best setting's steps.

    Returns:
        (total steps, expected misses); steps are inf when no allocation within the limit works.
    """
    best = int(np.argmin(log_costs))
    gaps = log_costs - log_costs[best]
    need = gaps > math.log1p(tolerance)
    var20 = cost_noise**2 * NOISE_REF_STEPS  # a window of n steps has variance var20 / n
    n_best = np.arange(min_steps, max_best_steps + 1, 1.0)
    slack = (gaps[need][None, :] / z) ** 2 - var20[best] / n_best[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rivals = np.where(slack > 0, var20[need][None, :] / slack, np.inf)
    rivals = np.maximum(rivals, min_steps)
    free = (~need).sum() - 1  # settings other than the best that need no separation
    totals = n_best + rivals.sum(axis=1) + free * min_steps
    k = int(np.argmin(totals))
    if not np.isfinite(totals[k]):
        return math.inf, math.inf
    sd = np.sqrt(var20[best] / n_best[k] + var20[need] / rivals[k])
    misses = float(norm.cdf(-gaps[need] / sd).sum()) if need.any() else 0.0
    return float(totals[k]), misses


def monotone_model_regret(
    time_s: np.ndarray, power_w: np.ndarray, cost: Callable[[float, float], float]
) -> float:
    """Regret of choosing by the monotone fit of (time, power) per ascending power limit."""
    t_fit = isotonic_regression(time_s, increasing=False).x
    p_fit = isotonic_regression(power_w, increasing=True).x
    true = np.array([cost(t, p) for t, p in zip(time_s, power_w, strict=True)])
    fitted = np.array([cost(t, p) for t, p in zip(t_fit, p_fit, strict=True)])
    return float(true[int(np.argmin(fitted))] / true.min() - 1.0)


def zeus_window_noise(profile_dir: Path) -> list[float]:
    """Per profile file with ≥ 3 non-binding windows: relative std of window time, per 20 steps."""
    out: list[float] = []
    for path in sorted(profile_dir.glob("prof_*.csv")):
        times = []
        with path.open() as f:
            for row in csv.DictReader(f):
                limit_w = float(row["window_name"].rsplit("_", 1)[-1])
                time_s = float(row["elapsed_time"])
                energies = [float(v) for k, v in row.items() if k.endswith("_energy")]
                if np.mean(energies) / time_s < 0.85 * limit_w:
                    times.append(time_s)
        if len(times) >= 3:
            rel = float(np.std(times, ddof=1) / np.mean(times))
            out.append(rel * math.sqrt(ZEUS_MEASURED_STEPS / NOISE_REF_STEPS))
    return out


def h100_block_noise(device_dir: Path) -> list[float]:
    """Per H100 run and meter variant: block-to-block relative std of step time, per 20 steps."""
    out: list[float] = []
    for path in sorted(device_dir.glob("h100_meter_check_run*.json")):
        overhead = json.loads(path.read_text()).get("meter_overhead", {})
        steps = overhead.get("steps_per_block")
        for blocks in overhead.get("block_ms", {}).values():
            v = np.asarray(blocks, dtype=float)
            if steps and len(v) >= 4:
                rel = float(np.std(np.diff(v), ddof=1) / math.sqrt(2) / v.mean())
                out.append(rel * math.sqrt(steps / NOISE_REF_STEPS))
    return out
