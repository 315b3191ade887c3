"""Where to go when the grid gets dirty: move, pause in place, or carry on.

The rule (DESIGN.md): move from s to d when, over the remaining work or the forecast horizon,

    Σ (CI_s − CI_d)·P·Δt  >  CI_s·P_idle·(t_checkpoint + t_transfer + t_restart)
                             + transfer energy·CI_s + margin

Waiting in place (temporal shifting) is weighed the same way: the carbon of the remaining work
started now against started later (from the forecast), less what idling in between costs. Without a
forecast the current intensity stands in for every future hour. All functions here are pure.
Units: s, W, J, gCO2eq/kWh, g.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from caftm._units import carbon_g
from caftm.control.states import SiteOutlook

HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class MoveCost:
    """The cost of one move. Times in s, energy in J, margin in g.

    A move (or a wait) must save more than ``margin_g + margin_fraction × (carbon of the same
    work done here)``, so noise-level differences between sites never trigger one.
    """

    checkpoint_s: float = 60.0
    transfer_s: float = 120.0
    restart_s: float = 120.0
    transfer_energy_j: float = 0.0
    margin_g: float = 5.0
    margin_fraction: float = 0.05

    def margin_for_g(self, baseline_g: float) -> float:
        """The net saving (g) a move must beat when staying would emit ``baseline_g``."""
        return self.margin_g + self.margin_fraction * max(0.0, baseline_g)

    @property
    def downtime_s(self) -> float:
        """Time lost to one move."""
        return self.checkpoint_s + self.transfer_s + self.restart_s


class PlanKind(StrEnum):
    """What the Migration state decided."""

    MOVE = "move"
    PAUSE = "pause"
    STAY = "stay"


@dataclass(frozen=True, slots=True)
class Plan:
    """A Migration decision: where to (MOVE), until when (PAUSE), or STAY; with its reasoning."""

    kind: PlanKind
    reason: str
    dest: str = ""
    until_s: float = math.nan
    net_saving_g: float = math.nan


def mean_intensity(
    outlook: SiteOutlook, duration_s: float, *, start_offset_s: float = 0.0, use_forecast: bool
) -> float:
    """Mean intensity (gCO2eq/kWh) over ``[start_offset_s, start_offset_s + duration_s)`` from now.

    The forecast is piecewise constant per hour from now; past its end the mean of the forecast
    stands in. Without a forecast (or ``use_forecast=False``) the current intensity does.
    """
    forecast = outlook.forecast_g_per_kwh
    if not use_forecast or not forecast or duration_s <= 0.0:
        return outlook.intensity_g_per_kwh
    values = np.asarray(forecast, dtype=float)
    edges = np.arange(values.size + 1, dtype=float) * HOUR_S
    start, end = start_offset_s, start_offset_s + duration_s
    overlap = np.clip(np.minimum(edges[1:], end) - np.maximum(edges[:-1], start), 0.0, None)
    beyond = max(0.0, end - max(start, float(edges[-1])))
    total = float(np.dot(overlap, values)) + beyond * float(values.mean())
    return total / duration_s


def move_cost_g(cost: MoveCost, *, source_g_per_kwh: float, idle_power_w: float) -> float:
    """Carbon (g) of moving away from a site at ``source_g_per_kwh``, margin excluded."""
    idle_j = idle_power_w * cost.downtime_s
    return carbon_g(idle_j + cost.transfer_energy_j, source_g_per_kwh)


@dataclass(frozen=True, slots=True)
class MoveOption:
    """One candidate destination, scored."""

    site: str
    saving_g: float  # carbon saved over the window by training at the destination instead
    cost_g: float  # the move's own carbon
    net_g: float  # saving_g − cost_g
    baseline_g: float  # carbon of the window if training stays


def score_moves(
    current: SiteOutlook,
    candidates: tuple[SiteOutlook, ...],
    *,
    power_w: float,
    idle_power_w: float,
    window_s: float,
    cost: MoveCost,
    use_forecast: bool,
) -> list[MoveOption]:
    """Score moving from ``current`` to each other candidate, best (largest net saving) first.

    ``window_s`` is the remaining work or the forecast horizon, whichever is shorter.
    """
    energy_j = power_w * window_s
    here = mean_intensity(current, window_s, use_forecast=use_forecast)
    move_g = move_cost_g(
        cost, source_g_per_kwh=current.intensity_g_per_kwh, idle_power_w=idle_power_w
    )
    options = []
    for dest in candidates:
        if dest.site == current.site:
            continue
        there = mean_intensity(
            dest, window_s, start_offset_s=cost.downtime_s, use_forecast=use_forecast
        )
        saving = carbon_g(energy_j, here - there)
        options.append(
            MoveOption(dest.site, saving, move_g, saving - move_g, carbon_g(energy_j, here))
        )
    options.sort(key=lambda o: o.net_g, reverse=True)
    return options


@dataclass(frozen=True, slots=True)
class WaitOption:
    """Pausing in place for ``delay_s``, scored."""

    delay_s: float
    saving_g: float  # carbon of the work started now − started after the delay
    cost_g: float  # idling through the pause
    net_g: float
    baseline_g: float  # carbon of the work started now


def score_wait(
    current: SiteOutlook,
    *,
    power_w: float,
    idle_power_w: float,
    work_s: float,
    max_delay_s: float,
) -> WaitOption | None:
    """Best whole-hour delay (≤ ``max_delay_s``) of the remaining work, from the forecast.

    Returns None when there is no forecast or no delay fits.
    """
    if not current.forecast_g_per_kwh or max_delay_s < HOUR_S:
        return None
    energy_j = power_w * work_s
    now_g = carbon_g(energy_j, mean_intensity(current, work_s, use_forecast=True))
    best: WaitOption | None = None
    horizon_h = len(current.forecast_g_per_kwh)
    for hours in range(1, min(int(max_delay_s // HOUR_S), horizon_h) + 1):
        delay_s = hours * HOUR_S
        later = mean_intensity(current, work_s, start_offset_s=delay_s, use_forecast=True)
        idle = mean_intensity(current, delay_s, use_forecast=True)
        saving = now_g - carbon_g(energy_j, later)
        idle_g = carbon_g(idle_power_w * delay_s, idle)
        option = WaitOption(delay_s, saving, idle_g, saving - idle_g, now_g)
        if best is None or option.net_g > best.net_g:
            best = option
    return best


def latest_pause_end_s(
    now_s: float, *, deadline_s: float | None, remaining_work_s: float | None, max_pause_s: float
) -> float:
    """The latest time a pause may last to, so the remaining work still meets the deadline."""
    limit = now_s + max_pause_s
    if deadline_s is not None:
        limit = min(limit, deadline_s - (remaining_work_s or 0.0))
    return limit
