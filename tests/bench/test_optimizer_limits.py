"""The optimiser bench's bounds: the oracle allocation and the monotone-model regret."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import _optimizer_limits as limits


def test_two_settings_need_the_textbook_sample_size() -> None:
    # Var of the difference 20σ²(1/n₁ + 1/n₂) ≤ (g/z)², split evenly at the optimum:
    # n = 2 · 20σ² z² / g² each.
    sigma, z, gap = 0.01, 3.0, math.log(1.05)
    expected_each = 2 * 20 * sigma**2 * z**2 / gap**2
    steps, misses = limits.oracle_allocation(
        np.array([0.0, gap]), np.array([sigma, sigma]), z=z, min_steps=1
    )
    assert steps == pytest.approx(2 * expected_each, abs=1.0)
    assert misses == pytest.approx(0.00135, rel=0.05)  # Φ(−3): the rival measures cheaper


def test_settings_within_the_tolerance_need_one_short_window() -> None:
    log_costs = np.log([1.0, 1.01, 1.015, 1.5])
    noise = np.full(4, 0.01)
    steps, misses = limits.oracle_allocation(log_costs, noise, z=3.0, tolerance=0.02, min_steps=5)
    # the two near-ties get 5 steps each; the far one and the best only a few more than 5
    assert 20 <= steps <= 22 and misses < 1e-6
    # tighten the tolerance: the near-ties must now be separated, at a far higher price
    tight, _ = limits.oracle_allocation(log_costs, noise, z=3.0, tolerance=0.005, min_steps=5)
    assert tight > 10 * steps


def test_monotone_model_regret_is_zero_on_monotone_profiles_only() -> None:
    def cost(t: float, p: float) -> float:
        return t * p

    time_s = np.array([2.0, 1.5, 1.2, 1.1, 1.05])
    power_w = np.array([100.0, 125.0, 150.0, 170.0, 180.0])
    assert limits.monotone_model_regret(time_s, power_w, cost) == 0.0
    # a dip at 170 W makes it the cheapest (170 vs 200); the monotone fit pools it with 180 W's
    # bump (1.2 s each) and picks 100 W: 200 / 170 − 1
    bumpy = np.array([2.0, 1.6, 1.5, 1.0, 1.4])
    regret = limits.monotone_model_regret(bumpy, power_w, cost)
    assert regret == pytest.approx(200 / 170 - 1)
