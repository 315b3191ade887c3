"""The suspend threshold θ and its hysteresis band.

Three modes:

- ``absolute``: θ is a fixed intensity (gCO2eq/kWh).
- ``relative``: θ is a percentile of the current site's next-24 h forecast (falling back to recent
  history when the source gives no forecast): suspend in the dirtiest hours of the day.
- ``auto``: the break-even rule of :mod:`caftm.control.migration`: θ is the lowest intensity at
  which moving to the best other site pays for itself over the remaining work (or horizon),

      θ = min_d (CI_d·E + margin_g) / (E·(1 − margin_fraction) − E_idle_move − E_transfer)

  with E = P·window (energies in kWh),

  so a suspend fires exactly when a move would be worth it.

Hysteresis: the grid counts as clean again only at ``θ·(1 − hysteresis_fraction)``. Bands are
computed when readings change (not per step); the controller precomputes them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from caftm._units import J_PER_KWH
from caftm.control.migration import MoveCost
from caftm.control.states import Band, SiteOutlook
from caftm.errors import ConfigError


class ThresholdMode(StrEnum):
    """How θ is set."""

    ABSOLUTE = "absolute"
    RELATIVE = "relative"
    AUTO = "auto"


@dataclass(frozen=True, slots=True)
class ThresholdSpec:
    """How to compute θ.

    Attributes:
        mode: see :class:`ThresholdMode`.
        value_g_per_kwh: θ for ``absolute``.
        percentile: 0–100, for ``relative``.
        hysteresis_fraction: the clean level is ``θ·(1 − hysteresis_fraction)``.
    """

    mode: ThresholdMode = ThresholdMode.ABSOLUTE
    value_g_per_kwh: float = 400.0
    percentile: float = 75.0
    hysteresis_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.percentile <= 100.0:
            raise ConfigError(f"threshold.percentile {self.percentile} must be within 0..100")
        if not 0.0 <= self.hysteresis_fraction < 1.0:
            raise ConfigError(
                f"threshold.hysteresis_fraction {self.hysteresis_fraction} must be within [0, 1)"
            )
        if self.mode is ThresholdMode.ABSOLUTE and not self.value_g_per_kwh >= 0.0:
            raise ConfigError(
                f"threshold.value_g_per_kwh {self.value_g_per_kwh} must be a non-negative number"
            )


def band_around(theta_g_per_kwh: float, hysteresis_fraction: float) -> Band:
    """The band for a given θ."""
    return Band(theta_g_per_kwh, theta_g_per_kwh * (1.0 - hysteresis_fraction))


def relative_threshold(values_g_per_kwh: Sequence[float], percentile: float) -> float:
    """The ``percentile`` of the given intensities (inf when there are none)."""
    if not values_g_per_kwh:
        return math.inf
    ordered = sorted(float(v) for v in values_g_per_kwh)
    if any(math.isnan(v) for v in ordered):
        return math.nan
    # numpy's "linear" percentile, as it computes it (a few µs here instead of ~100 µs)
    position = percentile / 100.0 * (len(ordered) - 1)
    below = math.floor(position)
    low, high = ordered[below], ordered[min(below + 1, len(ordered) - 1)]
    share = position - below
    if share >= 0.5:
        return high - (high - low) * (1.0 - share)
    return low + (high - low) * share


def break_even_threshold(
    candidates: Sequence[SiteOutlook],
    current_site: str,
    *,
    power_w: float,
    idle_power_w: float,
    window_s: float,
    cost: MoveCost,
) -> float:
    """Lowest current-site intensity at which moving to the best other site pays (inf: never)."""
    energy_j = power_w * window_s
    overhead_j = idle_power_w * cost.downtime_s + cost.transfer_energy_j
    denominator = energy_j * (1.0 - cost.margin_fraction) - overhead_j
    if denominator <= 0.0:
        return math.inf
    margin = cost.margin_g * J_PER_KWH
    others = [c.intensity_g_per_kwh for c in candidates if c.site != current_site]
    if not others:
        return math.inf
    return (min(others) * energy_j + margin) / denominator


def compute_band(
    spec: ThresholdSpec,
    *,
    current: SiteOutlook,
    candidates: Sequence[SiteOutlook] = (),
    history_g_per_kwh: Sequence[float] = (),
    power_w: float = 300.0,
    idle_power_w: float = 100.0,
    window_s: float = 24 * 3600.0,
    cost: MoveCost | None = None,
) -> Band:
    """The band in force now for ``spec``.

    Args:
        current: the current site (its forecast feeds ``relative``).
        candidates: all candidate sites (feed ``auto``).
        history_g_per_kwh: recent readings, the ``relative`` fallback without a forecast.
        power_w, idle_power_w, window_s, cost: the move economics for ``auto``.
    """
    if spec.mode is ThresholdMode.ABSOLUTE:
        theta = spec.value_g_per_kwh
    elif spec.mode is ThresholdMode.RELATIVE:
        values = current.forecast_g_per_kwh[:24] or tuple(history_g_per_kwh)
        theta = relative_threshold(values, spec.percentile)
    else:
        theta = break_even_threshold(
            candidates,
            current.site,
            power_w=power_w,
            idle_power_w=idle_power_w,
            window_s=window_s,
            cost=cost or MoveCost(),
        )
    return band_around(theta, spec.hysteresis_fraction)
