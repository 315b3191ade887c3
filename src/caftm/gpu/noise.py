"""How noisy are this job's profiling windows? Learned from repeated windows at one setting.

The optimiser's confidence bounds need the relative noise of a window's step time and average
power. It differs by GPU, workload and step length (our H100 showed 0.2–0.6% between 50-step
blocks; Zeus's V100/A40 profiling windows scatter by 1–8% where the limit does not bind), so a
fixed guess is wrong one way or the other. :class:`NoiseEstimator` starts from a prior and learns
from every setting measured more than once.

Model: a window of n steps has relative std ``σ · √(20 / n)`` (σ = the noise of a 20-step window)
in step time and in average power. For the windows k = 1..m at one setting, with x_k the window's
relative deviation from the setting's step-weighted mean, ``E[Σ n_k x_k²] = 20 σ² (m − 1)``; sums
over settings and over time and power give a pooled estimate, blended with the prior as ``nu``
pseudo-degrees of freedom: σ² = (nu · σ₀² + Σ n_k x_k² / 20) / (nu + Σ (m − 1)).
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from caftm.errors import ConfigError
from caftm.gpu.model import NOISE_REF_STEPS as REF_STEPS

__all__ = ["NoiseEstimator"]


class NoiseEstimator:
    """Pooled estimate of the relative noise of a 20-step window (step time and power).

    Args:
        prior_rel: the assumed σ before any repeat, e.g. 0.015 for 1.5%.
        prior_dof: weight of the prior in degrees of freedom (0 = data only once any exists).
        floor_rel: lowest σ ever returned (a lucky streak of agreeing windows must not make the
            optimiser over-confident).

    Raises:
        ConfigError: non-positive prior, negative weight, or a floor outside [0, prior].
    """

    def __init__(
        self, prior_rel: float, *, prior_dof: float = 4.0, floor_rel: float = 0.001
    ) -> None:
        if not prior_rel > 0 or not math.isfinite(prior_rel):
            raise ConfigError(f"noise prior must be a positive fraction, got {prior_rel}")
        if prior_dof < 0 or not 0 <= floor_rel <= prior_rel:
            raise ConfigError(f"need prior_dof >= 0 and 0 <= floor_rel <= {prior_rel}")
        self.prior_rel = prior_rel
        self.prior_dof = prior_dof
        self.floor_rel = floor_rel
        self._windows: dict[float, list[tuple[int, float, float]]] = defaultdict(list)

    def add(self, setting: float, steps: int, time_s: float, energy_j: float) -> None:
        """Record one window (steps ≥ 1, positive time and energy; callers validate)."""
        self._windows[float(setting)].append((steps, time_s, energy_j))

    def clear(self) -> None:
        """Forget every window (the prior stays)."""
        self._windows.clear()

    @property
    def dof(self) -> int:
        """Degrees of freedom from data: Σ over settings of (windows − 1), time and power each."""
        return 2 * sum(len(w) - 1 for w in self._windows.values() if len(w) > 1)

    def sum_of_squares(self) -> float:
        """Σ n_k x_k² over settings with repeats, for step time and for power together."""
        total = 0.0
        for windows in self._windows.values():
            if len(windows) < 2:
                continue
            n, time_s, energy_j = (
                np.array(column, dtype=float) for column in zip(*windows, strict=True)
            )
            for per_window in (time_s / n, energy_j / time_s):  # step time, average power
                # step-weighted mean, so the weighted deviations sum to zero
                mean = float(np.dot(n, per_window) / n.sum())
                total += float(np.dot(n, (per_window / mean - 1.0) ** 2))
        return total

    def estimate(self) -> float:
        """σ: the relative std of a 20-step window, prior and data blended (≥ ``floor_rel``)."""
        dof = self.dof
        if dof == 0:
            return self.prior_rel
        var = (self.prior_dof * self.prior_rel**2 + self.sum_of_squares() / REF_STEPS) / (
            self.prior_dof + dof
        )
        return max(self.floor_rel, math.sqrt(var))

    def window_rel(self, steps: int) -> float:
        """Relative std of a window of ``steps`` steps under the current estimate."""
        return self.estimate() * math.sqrt(REF_STEPS / max(steps, 1))
