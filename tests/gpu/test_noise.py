"""The noise estimator learns a window's relative noise from repeats; the optimiser uses it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tests.conftest import shared_file

from caftm.errors import ConfigError
from caftm.gpu.base import KnobKind
from caftm.gpu.cost import CostWeights
from caftm.gpu.noise import NoiseEstimator
from caftm.gpu.optimizer import OnlineOptimizer
from caftm.gpu.replay import ReplayBackend
from caftm.gpu.simulated import SimulatedBackend


def _feed(est: NoiseEstimator, noise_rel: float, windows: int, seed: int = 1) -> None:
    """Windows of 5–40 steps at three settings from the simulated GPU at a known noise."""
    backend = SimulatedBackend("resnet50", noise_rel=noise_rel, seed=seed)
    rng = np.random.default_rng(seed)
    for k in range(windows):
        setting = (600.0, 700.0, 500.0)[k % 3]
        m = backend.measure(setting, int(rng.integers(5, 41)), knob=KnobKind.POWER)
        est.add(m.setting, m.steps, m.time_s, m.energy_j)


@pytest.mark.parametrize("truth", [0.003, 0.01, 0.03])
def test_learns_the_true_noise_whatever_the_prior(truth: float) -> None:
    for prior in (truth / 3, 3 * truth):
        est = NoiseEstimator(prior, prior_dof=4)
        _feed(est, truth, windows=300)
        assert est.dof == 2 * (300 - 3)
        assert est.estimate() == pytest.approx(truth, rel=0.15)


def test_prior_alone_until_a_setting_repeats_and_then_a_blend() -> None:
    est = NoiseEstimator(0.02, prior_dof=4)
    est.add(500.0, 10, 1.0, 100.0)
    est.add(600.0, 10, 1.0, 120.0)
    assert est.dof == 0 and est.estimate() == 0.02
    # a repeat at 500: 10-step windows of 1.0 s and 1.1 s, same power
    est.add(500.0, 10, 1.1, 110.0)
    x = 1.0 / 1.05 - 1.0, 1.1 / 1.05 - 1.0
    ss = 10 * (x[0] ** 2 + x[1] ** 2)
    expected = math.sqrt((4 * 0.02**2 + ss / 20) / (4 + 2))
    assert est.estimate() == pytest.approx(expected)
    assert est.window_rel(5) == pytest.approx(expected * 2)
    est.clear()
    assert est.estimate() == 0.02


def test_agreeing_windows_never_push_below_the_floor() -> None:
    est = NoiseEstimator(0.01, prior_dof=0, floor_rel=0.002)
    for _ in range(5):
        est.add(300.0, 20, 2.0, 400.0)
    assert est.estimate() == 0.002


@pytest.mark.parametrize(
    "kwargs", [{"prior_rel": 0.0}, {"prior_rel": -0.1}, {"prior_rel": 0.01, "prior_dof": -1}]
)
def test_bad_arguments_are_clear_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match=r"noise|prior_dof"):
        NoiseEstimator(**kwargs)


def test_optimiser_learns_the_noise_and_adapts_its_effort() -> None:
    """A too-pessimistic prior costs steps; learning brings the effort down towards what the
    true noise needs, without losing the choice."""
    path = shared_file("gpu/zeus_power_limit_traces/power_v100.csv")
    key = "imagenet/resnet50/bs64/adadelta"
    weights = CostWeights(1.0, 300.0, 300.0, 250.0)

    def run(learn: bool) -> tuple[int, float, float]:
        backend = ReplayBackend(key, path=path, noise_rel=0.005, seed=3)
        opt = OnlineOptimizer(
            backend.supported(0, KnobKind.POWER),
            KnobKind.POWER,
            weights,
            steps_per_probe=10,
            sweep_steps=5,
            noise_rel=0.04,
            learn_noise=learn,
            max_profiling_steps=2000,
            max_probes=200,
        )
        while (probe := opt.next_probe()) is not None:
            opt.observe(backend.measure(probe, opt.probe_steps))
        return opt.profiling_steps, opt.noise, opt.best()

    fixed_steps, fixed_noise, fixed_best = run(learn=False)
    learned_steps, learned_noise, learned_best = run(learn=True)
    assert fixed_noise == 0.04 and learned_noise < 0.02
    assert learned_steps < 0.7 * fixed_steps
    assert learned_best == fixed_best
