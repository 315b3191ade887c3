"""Cost weights validate their input; the cost has the documented units."""

from __future__ import annotations

import pytest

from caftm.errors import ConfigError
from caftm.gpu.cost import CostWeights, step_cost


@pytest.mark.parametrize("eta", [-0.1, 1.01, float("nan")])
def test_eta_outside_unit_interval_is_refused(eta: float) -> None:
    with pytest.raises(ConfigError, match="eta"):
        CostWeights(eta, 300.0, 300.0, 700.0)


@pytest.mark.parametrize("ci", [-1.0, 2600.0])
def test_intensity_out_of_range_is_refused(ci: float) -> None:
    with pytest.raises(ConfigError, match="intensity"):
        CostWeights(0.5, ci, 300.0, 700.0)
    with pytest.raises(ConfigError, match="intensity"):
        CostWeights(0.5, 300.0, ci, 700.0)


def test_bad_reference_power_and_slowdown_are_refused() -> None:
    with pytest.raises(ConfigError, match="ref_power_w"):
        CostWeights(0.5, 300.0, 300.0, 0.0)
    with pytest.raises(ConfigError, match="max_slowdown"):
        CostWeights(0.5, 300.0, 300.0, 700.0, max_slowdown=-0.1)


def test_step_cost_is_grams_per_step() -> None:
    # carbon only: 1 s at 3600 W = 1 Wh; on a 1000 g/kWh grid that is 1 g
    assert step_cost(1.0, 3600.0, CostWeights(1.0, 1000.0, 0.0, 700.0)) == pytest.approx(1.0)
    # time only: priced at P_ref on CI_ref
    assert step_cost(2.0, 100.0, CostWeights(0.0, 50.0, 360.0, 500.0)) == pytest.approx(0.1)


@pytest.mark.parametrize("ref_power", [float("inf"), float("nan"), -1.0])
def test_reference_power_must_be_finite_and_positive(ref_power: float) -> None:
    with pytest.raises(ConfigError, match="ref_power_w"):
        CostWeights(0.5, 300.0, 300.0, ref_power)
