"""The Zeus-style exhaustive baseline and the sweep the CLI uses."""

from __future__ import annotations

import pytest

from caftm.errors import ConfigError, DeviceError
from caftm.gpu.base import KnobKind
from caftm.gpu.cost import CostWeights, step_cost
from caftm.gpu.exhaustive import exhaustive_search, sweep
from caftm.gpu.simulated import SimulatedBackend


def test_exhaustive_finds_the_true_optimum_without_noise() -> None:
    backend = SimulatedBackend("resnet50", noise_rel=0.0)
    settings = backend.supported(0, KnobKind.POWER)
    weights = CostWeights(1.0, 400.0, 300.0, 700.0)
    result = exhaustive_search(
        lambda s, n: backend.measure(s, n, knob=KnobKind.POWER), settings, weights, 10
    )
    truth = {s: step_cost(*backend.true_step_at(KnobKind.POWER, s), weights) for s in settings}
    assert result.best == min(truth, key=truth.__getitem__)
    assert result.steps_used == 10 * len(settings) and len(result.measurements) == len(settings)
    assert result.costs[result.best] == pytest.approx(min(truth.values()))


def test_exhaustive_respects_max_slowdown() -> None:
    backend = SimulatedBackend("resnet50", noise_rel=0.0)
    settings = backend.supported(0, KnobKind.CLOCK)
    weights = CostWeights(1.0, 400.0, 300.0, 700.0, max_slowdown=0.05)
    result = exhaustive_search(lambda s, n: backend.measure(s, n), settings, weights, 1)
    fastest = result.measurements[0].step_time_s
    chosen = next(m for m in result.measurements if m.setting == result.best)
    assert chosen.step_time_s <= 1.05 * fastest and result.best < 1980


def test_exhaustive_rejects_bad_input() -> None:
    weights = CostWeights(0.5, 300.0, 300.0, 700.0)
    with pytest.raises(ConfigError, match="needs at least one setting"):
        exhaustive_search(lambda s, n: None, [], weights)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError, match="steps_per_setting must be >= 1, got 0"):
        exhaustive_search(lambda s, n: None, [1.0], weights, 0)  # type: ignore[arg-type,return-value]


def test_sweep_measures_every_setting_and_resets(tmp_path) -> None:
    backend = SimulatedBackend("gpt", noise_rel=0.0, state_path=tmp_path / "gpu.json")
    rows = sweep(backend, 0, KnobKind.POWER, 5)
    assert [m.setting for m in rows] == sorted(backend.supported(0, KnobKind.POWER), reverse=True)
    assert rows[0].step_time_s < rows[-1].step_time_s
    assert backend.get(0, KnobKind.POWER) == 700.0  # restored
    with pytest.raises(DeviceError, match="unknown GPU index"):
        sweep(backend, 2, KnobKind.CLOCK, 5)
    assert backend.get(0, KnobKind.POWER) == 700.0


@pytest.mark.parametrize("time_s", [0.0, float("nan"), float("inf")])
def test_exhaustive_rejects_windows_without_a_usable_time(time_s: float) -> None:
    from caftm.gpu.base import Measurement

    weights = CostWeights(0.5, 300.0, 300.0, 700.0)

    def measure(setting: float, steps: int) -> Measurement:
        return Measurement(KnobKind.CLOCK, setting, steps, time_s, 10.0)

    with pytest.raises(ConfigError, match="finite time > 0 s"):
        exhaustive_search(measure, [1980.0, 990.0], weights, 5)
