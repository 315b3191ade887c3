"""Screening by measurement: the optimiser's strategy when a knob has only a few settings.

Real power-limit profiles have knees and bumps no smooth model explains (a median 5% misfit on the
Zeus traces), so with few settings each one's cost is estimated from its own windows alone.
:func:`measured_costs` turns the windows into log costs with standard deviations;
:func:`duel_probe` picks the next window of the sequential duel (LUCB) between the current choice
and its strongest rival, or says the choice is settled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from caftm.gpu.base import Measurement
from caftm.gpu.cost import CostWeights, power_share, step_cost_array

__all__ = ["MeasuredCosts", "duel_probe", "measured_costs"]


@dataclass(frozen=True, slots=True)
class MeasuredCosts:
    """Costs estimated from windows alone, per setting (ascending).

    Attributes:
        best: index of the cheapest feasible measured setting (the largest if none).
        log_cost: log cost per setting; inf where unmeasured or beyond the slowdown bound.
        std: std of ``log_cost`` (inf where unmeasured).
    """

    best: int
    log_cost: NDArray[np.float64]
    std: NDArray[np.float64]


def measured_costs(
    settings: NDArray[np.float64],
    windows: Mapping[float, Measurement],
    weights: CostWeights,
    window_noise: Callable[[int], float],
) -> MeasuredCosts:
    """Estimate each measured setting's log cost from its merged windows.

    Args:
        settings: supported settings, ascending.
        windows: merged window per measured setting.
        weights: cost weights (the slowdown bound is taken against the largest setting).
        window_noise: relative std of step time and power of a window of n steps.
    """
    n = len(settings)
    mu = np.full(n, math.inf)
    sd = np.full(n, math.inf)
    t_est = np.full(n, math.inf)
    for i, setting in enumerate(settings):
        m = windows.get(float(setting))
        if m is None:
            continue
        w = float(power_share(m.avg_power_w, weights))
        cost = float(step_cost_array(m.step_time_s, m.avg_power_w, weights))
        mu[i] = math.log(max(cost, 1e-300))
        sd[i] = window_noise(m.steps) * math.sqrt(1.0 + w * w)
        t_est[i] = m.step_time_s
    ok = np.isfinite(mu)
    limit = weights.max_slowdown
    if limit is not None and math.isfinite(t_est[-1]):
        ok &= t_est <= (1.0 + limit) * t_est[-1] * (1.0 + 1e-9)
        ok[-1] = True
    mu = np.where(ok, mu, math.inf)
    best = int(np.argmin(mu)) if np.isfinite(mu).any() else n - 1
    return MeasuredCosts(best, mu, sd)


def duel_probe(
    settings: NDArray[np.float64],
    windows: Mapping[float, Measurement],
    costs: MeasuredCosts,
    *,
    kappa: float,
    tolerance: float,
    confirm_steps: int,
    guard: float = 0.0,
) -> float | None:
    """The next window of the duel, or None when no rival can beat the choice by more than
    ``tolerance`` at ``kappa`` standard deviations.

    The window goes to the less-measured of the choice and its strongest rival. The choice must
    have at least ``confirm_steps`` steps before settling: after one short window per setting, a
    lucky window too often wins one of the many comparisons.
    """
    i_best, mu, sd = costs.best, costs.log_cost, costs.std
    with np.errstate(invalid="ignore"):
        advantage = (mu[i_best] - mu) + kappa * np.hypot(sd, sd[i_best])
    advantage[i_best] = -math.inf
    advantage[~np.isfinite(mu)] = -math.inf
    j = int(np.argmax(advantage))
    if advantage[j] <= math.log1p(tolerance):
        if windows[float(settings[i_best])].steps < confirm_steps:
            return float(settings[i_best])
        return _close_rival(settings, windows, costs, guard, confirm_steps)
    steps = {k: windows[float(settings[k])].steps for k in (i_best, j)}
    return float(settings[i_best if steps[i_best] <= steps[j] else j])


def _close_rival(
    settings: NDArray[np.float64],
    windows: Mapping[float, Measurement],
    costs: MeasuredCosts,
    guard: float,
    confirm_steps: int,
) -> float | None:
    """Before settling, a setting whose measured cost lies within ``guard`` standard deviations
    of the choice's (a close pair) and which has fewer than ``confirm_steps`` steps gets one more
    window: one short unlucky window must not dismiss the true optimum."""
    if guard <= 0:
        return None
    i_best, mu, sd = costs.best, costs.log_cost, costs.std
    for k in np.argsort(mu):
        if k == i_best or not math.isfinite(mu[k]):
            continue
        if mu[k] - mu[i_best] > guard * math.hypot(sd[k], sd[i_best]):
            break
        if windows[float(settings[k])].steps < confirm_steps:
            return float(settings[k])
    return None
