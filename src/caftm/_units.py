"""Unit conversions, kept in one place (internal units: s, W, J, MHz, gCO2eq/kWh, g)."""

from __future__ import annotations

J_PER_KWH = 3.6e6


def carbon_g(energy_j: float, intensity_g_per_kwh: float) -> float:
    """Carbon in grams emitted by ``energy_j`` joules at ``intensity_g_per_kwh``."""
    return energy_j / J_PER_KWH * intensity_g_per_kwh
