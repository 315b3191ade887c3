"""The per-step cost the Scaling state minimises (the Zeus/Chase form, carbon-aware).

    J(s) = T(s) · [ η · CI · P(s) + (1 − η) · CI_ref · P_ref ]  /  3.6e6

T in s, P and P_ref in W, CI and CI_ref in gCO2eq/kWh. T·CI·P has units J·g/kWh; dividing by
3.6e6 J/kWh makes J a mass: grams of CO2-equivalent per step. The first term is the carbon the step
actually emits (weighted by η); the second prices the step's *time* as if it ran at the reference
power P_ref on a reference grid CI_ref (weighted by 1 − η), so η = 1 minimises carbon only and
η = 0 minimises time only. caftm's default reference is P_ref = the GPU's maximum power limit and
CI_ref = a fixed reference intensity (e.g. 300 g/kWh), so a cleaner grid (lower CI) shifts the
optimum toward speed and a dirtier grid toward energy saving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from caftm._units import J_PER_KWH
from caftm.errors import ConfigError

__all__ = [
    "MAX_INTENSITY_G_PER_KWH",
    "CostWeights",
    "power_share",
    "step_cost",
    "step_cost_array",
]

#: Highest carbon intensity accepted (gCO2eq/kWh); no real grid comes close.
MAX_INTENSITY_G_PER_KWH = 2500.0


@dataclass(frozen=True, slots=True)
class CostWeights:
    """Weights of the per-step cost.

    Attributes:
        eta: carbon-vs-time trade-off in [0, 1] (1 = carbon only).
        intensity_g_per_kwh: current or forecast carbon intensity CI, gCO2eq/kWh.
        ref_intensity_g_per_kwh: reference intensity CI_ref, gCO2eq/kWh.
        ref_power_w: reference power P_ref (usually the maximum power limit), W.
        max_slowdown: optional constraint T(s) ≤ (1 + max_slowdown) · T(s_max); None = no limit.

    Raises:
        ConfigError: η outside [0, 1], an intensity outside [0, 2500], P_ref not finite and > 0,
            or a negative max_slowdown.
    """

    eta: float
    intensity_g_per_kwh: float
    ref_intensity_g_per_kwh: float
    ref_power_w: float
    max_slowdown: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.eta <= 1.0 or np.isnan(self.eta):
            raise ConfigError(f"cost weight eta must be in [0, 1], got {self.eta}")
        for name, value in (
            ("intensity_g_per_kwh", self.intensity_g_per_kwh),
            ("ref_intensity_g_per_kwh", self.ref_intensity_g_per_kwh),
        ):
            if not 0.0 <= value <= MAX_INTENSITY_G_PER_KWH:
                raise ConfigError(
                    f"cost weight {name} must be in [0, {MAX_INTENSITY_G_PER_KWH:g}] gCO2eq/kWh, "
                    f"got {value}"
                )
        if not 0.0 < self.ref_power_w < np.inf:
            raise ConfigError(
                f"cost weight ref_power_w must be a finite power > 0 W, got {self.ref_power_w}"
            )
        if self.max_slowdown is not None and not self.max_slowdown >= 0.0:
            raise ConfigError(
                f"max_slowdown must be >= 0 (e.g. 0.1 = 10%), got {self.max_slowdown}"
            )


def step_cost_array(
    step_time_s: ArrayLike, power_w: ArrayLike, weights: CostWeights
) -> NDArray[np.float64]:
    """Vectorised :func:`step_cost`: gCO2eq-equivalent per step for arrays of T (s) and P (W)."""
    t = np.asarray(step_time_s, dtype=float)
    p = np.asarray(power_w, dtype=float)
    rate = (
        weights.eta * weights.intensity_g_per_kwh * p
        + (1.0 - weights.eta) * weights.ref_intensity_g_per_kwh * weights.ref_power_w
    )
    return np.asarray(t * rate / J_PER_KWH, dtype=float)


def power_share(power_w: ArrayLike, weights: CostWeights) -> NDArray[np.float64]:
    """Share of the cost that scales with power: η·CI·P / (η·CI·P + (1−η)·CI_ref·P_ref).

    It is the weight w of log P in log J (d log J = d log T + w · d log P), so a measured cost's
    relative noise is √(σ_T² + w² σ_P²).
    """
    p = np.asarray(power_w, dtype=float)
    a = weights.eta * weights.intensity_g_per_kwh * p
    b = (1.0 - weights.eta) * weights.ref_intensity_g_per_kwh * weights.ref_power_w
    return np.asarray(a / np.maximum(a + b, 1e-300), dtype=float)


def step_cost(step_time_s: float, power_w: float, weights: CostWeights) -> float:
    """Cost of one step that took ``step_time_s`` seconds at ``power_w`` watts.

    Returns:
        grams of CO2-equivalent per step (see the module docstring for the formula).
    """
    return float(step_cost_array(step_time_s, power_w, weights))
