"""Screening by measurement: cost estimates from windows alone and the duel's decisions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caftm.gpu.base import KnobKind, Measurement
from caftm.gpu.cost import CostWeights, power_share, step_cost
from caftm.gpu.screening import duel_probe, measured_costs

SETTINGS = np.array([100.0, 150.0, 200.0, 250.0])
WEIGHTS = CostWeights(1.0, 300.0, 300.0, 250.0)


def _window(setting: float, steps: int, step_time_s: float, power_w: float) -> Measurement:
    return Measurement(
        KnobKind.POWER, setting, steps, steps * step_time_s, steps * step_time_s * power_w
    )


def _noise(steps: int) -> float:
    return 0.01 * math.sqrt(20 / steps)


def test_costs_come_from_the_windows_with_their_noise() -> None:
    windows = {150.0: _window(150.0, 5, 1.2, 140.0), 250.0: _window(250.0, 20, 1.0, 200.0)}
    costs = measured_costs(SETTINGS, windows, WEIGHTS, _noise)
    assert costs.best == 1  # 1.2 s × 140 W beats 1.0 s × 200 W with η = 1
    assert costs.log_cost[1] == pytest.approx(math.log(step_cost(1.2, 140.0, WEIGHTS)))
    assert np.isinf(costs.log_cost[[0, 2]]).all() and np.isinf(costs.std[[0, 2]]).all()
    w = float(power_share(200.0, WEIGHTS))
    assert w == 1.0  # η = 1: all of the cost scales with power
    assert costs.std[3] == pytest.approx(0.01 * math.sqrt(1 + w * w))


def test_slowdown_bound_excludes_slow_settings_but_never_the_largest() -> None:
    bounded = CostWeights(1.0, 300.0, 300.0, 250.0, max_slowdown=0.1)
    windows = {150.0: _window(150.0, 20, 1.2, 140.0), 250.0: _window(250.0, 20, 1.0, 200.0)}
    costs = measured_costs(SETTINGS, windows, bounded, _noise)
    assert costs.best == 3 and np.isinf(costs.log_cost[1])


def test_duel_settles_a_clear_winner_only_once_confirmed() -> None:
    windows = {s: _window(s, 5, 1.0, 100.0 + s) for s in SETTINGS}
    costs = measured_costs(SETTINGS, windows, WEIGHTS, _noise)
    # 100 W is cheaper by ≥ 20%: no rival can catch up, but one 5-step window is not enough
    assert (
        duel_probe(SETTINGS, windows, costs, kappa=2.5, tolerance=0.02, confirm_steps=15) == 100.0
    )
    windows[100.0] = _window(100.0, 15, 1.0, 200.0)
    costs = measured_costs(SETTINGS, windows, WEIGHTS, _noise)
    assert duel_probe(SETTINGS, windows, costs, kappa=2.5, tolerance=0.02, confirm_steps=15) is None


def test_duel_measures_the_less_measured_of_a_close_pair() -> None:
    windows = {
        100.0: _window(100.0, 30, 1.0, 200.0),
        150.0: _window(150.0, 5, 1.0, 201.0),  # within noise of the choice
        200.0: _window(200.0, 5, 1.0, 300.0),
        250.0: _window(250.0, 5, 1.0, 320.0),
    }
    costs = measured_costs(SETTINGS, windows, WEIGHTS, _noise)
    assert costs.best == 0
    assert (
        duel_probe(SETTINGS, windows, costs, kappa=2.5, tolerance=0.02, confirm_steps=15) == 150.0
    )
    windows[150.0] = _window(150.0, 60, 1.0, 201.0)  # now the choice is the less measured
    costs = measured_costs(SETTINGS, windows, WEIGHTS, _noise)
    assert (
        duel_probe(SETTINGS, windows, costs, kappa=2.5, tolerance=0.02, confirm_steps=15) == 100.0
    )
