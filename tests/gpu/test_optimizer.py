"""The online optimiser: converges on known optima, honours constraints, re-optimises."""

from __future__ import annotations

import numpy as np
import pytest

from caftm.errors import ConfigError
from caftm.gpu.base import KnobKind, Measurement
from caftm.gpu.cost import CostWeights, step_cost
from caftm.gpu.optimizer import SCREEN_DUEL_STEPS, SCREEN_SWEEP_STEPS, OnlineOptimizer
from caftm.gpu.simulated import SimulatedBackend, SimWorkload

CLOCK, POWER = KnobKind.CLOCK, KnobKind.POWER


def _weights(eta: float = 1.0, ci: float = 300.0, **kw: float) -> CostWeights:
    return CostWeights(eta, ci, 300.0, 700.0, **kw)  # type: ignore[arg-type]


def _drive(opt: OnlineOptimizer, backend: SimulatedBackend, knob: KnobKind) -> list[float]:
    probes = []
    while (probe := opt.next_probe()) is not None:
        probes.append(probe)
        opt.observe(backend.measure(probe, opt.steps_per_probe, knob=knob))
    return probes


def _regret(backend: SimulatedBackend, knob: KnobKind, settings, chosen, weights) -> float:
    costs = {s: step_cost(*backend.true_step_at(knob, s), weights) for s in settings}
    return costs[chosen] / min(costs.values()) - 1.0


@pytest.mark.parametrize("workload", ["resnet50", "gpt"])
@pytest.mark.parametrize("knob", [CLOCK, POWER])
def test_converges_to_the_known_optimum_within_max_probes(workload: str, knob: KnobKind) -> None:
    backend = SimulatedBackend(workload, noise_rel=0.01, seed=4)
    settings = backend.supported(0, knob)
    weights = _weights(eta=1.0, ci=500.0)
    opt = OnlineOptimizer(settings, knob, weights, max_probes=8)
    probes = _drive(opt, backend, knob)
    assert opt.settled and 2 <= len(probes) <= 8
    assert probes[0] == max(settings)
    chosen = opt.best()
    assert chosen in settings and chosen < max(settings)  # an interior optimum
    assert _regret(backend, knob, settings, chosen, weights) < 0.01


def test_custom_curve_with_a_known_optimum() -> None:
    wl = SimWorkload("custom", t_max_s=0.1, beta=0.1, p_idle_w=300.0, p_dyn_w=300.0, gamma=2.0)
    backend = SimulatedBackend(wl, noise_rel=0.0)
    settings = backend.supported(0, CLOCK)
    weights = _weights(eta=1.0)
    # energy ∝ (β + (1-β)/x)(P_idle + P_dyn x²): minimise on the grid independently
    x = np.array(settings) / 1980.0
    energy = (0.1 + 0.9 / x) * (300.0 + 300.0 * x**2)
    expected = settings[int(np.argmin(energy))]
    opt = OnlineOptimizer(settings, CLOCK, weights)
    _drive(opt, backend, CLOCK)
    assert abs(opt.best() - expected) <= 60.0
    assert _regret(backend, CLOCK, settings, opt.best(), weights) < 0.002


def test_max_slowdown_is_respected() -> None:
    backend = SimulatedBackend("resnet50", noise_rel=0.0)
    settings = backend.supported(0, CLOCK)
    free = OnlineOptimizer(settings, CLOCK, _weights())
    _drive(free, backend, CLOCK)
    t_max, _ = backend.true_step_at(CLOCK, 1980)
    t_free, _ = backend.true_step_at(CLOCK, free.best())
    assert t_free > 1.10 * t_max  # the constraint below bites
    bound = OnlineOptimizer(settings, CLOCK, _weights(max_slowdown=0.10))
    _drive(bound, backend, CLOCK)
    t_bound, _ = backend.true_step_at(CLOCK, bound.best())
    assert t_bound <= 1.10 * t_max * 1.001
    assert bound.best() < 1980  # still saves energy within the bound


def test_set_weights_reoptimises_on_a_big_ci_move_only() -> None:
    backend = SimulatedBackend("resnet50", noise_rel=0.0)
    settings = backend.supported(0, CLOCK)
    opt = OnlineOptimizer(settings, CLOCK, _weights(eta=0.5, ci=300.0), reoptimize_ci_fraction=0.15)
    _drive(opt, backend, CLOCK)
    first = opt.best()
    assert opt.set_weights(_weights(eta=0.5, ci=320.0)) is False  # a 7% move: hold the setting
    assert opt.best() == first
    assert opt.set_weights(_weights(eta=0.5, ci=50.0)) is True  # clean grid: run faster
    assert opt.best() > first
    assert opt.set_weights(_weights(eta=0.5, ci=700.0)) is True  # dirty grid: save energy
    assert opt.best() < first


def test_drift_reopens_profiling() -> None:
    backend = SimulatedBackend("gpt", noise_rel=0.0)
    settings = backend.supported(0, CLOCK)
    opt = OnlineOptimizer(settings, CLOCK, _weights(), drift_tolerance=0.1)
    _drive(opt, backend, CLOCK)
    best = opt.best()
    same = backend.measure(best, 20)
    assert opt.check_drift(same) is False and opt.settled
    slower = Measurement(CLOCK, best, 20, same.time_s * 1.3, same.energy_j * 1.3)
    assert opt.check_drift(slower) is True
    assert not opt.settled and opt.next_probe() == max(settings)


def test_predict_before_data_and_bad_input_are_clear_errors() -> None:
    with pytest.raises(ConfigError, match="at least one"):
        OnlineOptimizer([], CLOCK, _weights())
    opt = OnlineOptimizer([1000.0, 1500.0], CLOCK, _weights())
    with pytest.raises(ConfigError, match="observed window"):
        opt.predict(1000.0)
    with pytest.raises(ConfigError, match="knob"):
        opt.observe(Measurement(POWER, 300.0, 20, 1.0, 300.0))
    with pytest.raises(ConfigError, match="eta"):
        _weights(eta=1.5)


def test_single_setting_is_settled_at_once() -> None:
    opt = OnlineOptimizer([1980.0], CLOCK, _weights())
    assert opt.settled and opt.next_probe() is None and opt.best() == 1980.0


def test_bumpy_profile_falls_back_to_measured_costs() -> None:
    """A profile no smooth model explains (a data-loader-bound job): pick by measurement."""
    settings = [100.0, 125.0, 150.0, 175.0, 200.0, 225.0, 250.0]
    times = dict(zip(settings, [1.00, 1.09, 0.93, 1.06, 0.98, 1.08, 1.03], strict=True))
    weights = CostWeights(1.0, 300.0, 300.0, 250.0)

    def measure(setting: float, steps: int) -> Measurement:
        t = 0.05 * times[setting]
        return Measurement(POWER, setting, steps, steps * t, steps * t * 40.0)

    opt = OnlineOptimizer(settings, POWER, weights, steps_per_probe=10, max_probes=12)
    probes = 0
    while (probe := opt.next_probe()) is not None:
        opt.observe(measure(probe, 10))
        probes += 1
    assert probes <= 12 and opt.settled
    assert opt.best() == 150.0


@pytest.mark.parametrize(
    "key", ["imagenet/resnet50/bs128/adadelta", "squad/bert_base_uncased/bs32/adamw"]
)
@pytest.mark.parametrize("eta", [0.5, 1.0])
def test_converges_on_real_power_limit_traces(key: str, eta: float) -> None:
    from tests.conftest import shared_file

    from caftm.gpu.replay import ReplayBackend

    backend = ReplayBackend(
        key, path=shared_file("gpu/zeus_power_limit_traces/power_v100.csv"), noise_rel=0.01
    )
    settings = backend.supported(0, POWER)
    weights = CostWeights(eta, 500.0, 300.0, max(settings))
    opt = OnlineOptimizer(settings, POWER, weights, steps_per_probe=10, max_probes=12)
    while (probe := opt.next_probe()) is not None:
        opt.observe(backend.measure(probe, opt.probe_steps))
    truth = {s: step_cost(*backend.true_step_at(POWER, s), weights) for s in settings}
    assert truth[opt.best()] / min(truth.values()) - 1 <= 0.02
    assert opt.profiling_steps <= 0.4 * 50 * len(settings)  # well under Zeus's 50 steps/limit


def _screen_measure(times: dict[float, float], power_w: float = 40.0):  # type: ignore[no-untyped-def]
    def measure(setting: float, steps: int) -> Measurement:
        t = 0.05 * times[setting]
        return Measurement(POWER, setting, steps, steps * t, steps * t * power_w)

    return measure


def test_screening_sweeps_every_setting_short_then_duels_the_close_pair() -> None:
    settings = [100.0, 125.0, 150.0, 175.0, 200.0, 225.0, 250.0]
    times = dict(zip(settings, [1.30, 1.12, 1.00, 1.005, 1.10, 1.20, 1.25], strict=True))
    measure = _screen_measure(times)
    opt = OnlineOptimizer(
        settings,
        POWER,
        CostWeights(1.0, 300.0, 300.0, 250.0),
        steps_per_probe=10,
        sweep_steps=5,
        max_probes=40,
        noise_rel=0.01,
    )
    assert opt.screening
    probes: list[tuple[float, int]] = []
    while (probe := opt.next_probe()) is not None:
        probes.append((probe, opt.probe_steps))
        opt.observe(measure(probe, opt.probe_steps))
    sweep = probes[: len(settings)]
    assert [s for s, _ in sweep] == sorted(settings, reverse=True)  # largest first
    assert all(n == 5 for _, n in sweep)
    duel = probes[len(settings) :]
    assert duel and all(n == 10 for _, n in duel)
    assert {s for s, _ in duel} <= {150.0, 175.0}  # only the close pair gets more windows
    assert opt.best() == 150.0


def test_screening_stops_early_on_a_clear_winner_but_confirms_it() -> None:
    settings = [100.0, 150.0, 200.0, 250.0]
    times = dict(zip(settings, [2.0, 0.8, 1.5, 1.6], strict=True))
    opt = OnlineOptimizer(settings, POWER, CostWeights(1.0, 300.0, 300.0, 250.0), noise_rel=0.01)
    measure = _screen_measure(times)
    probes = []
    while (probe := opt.next_probe()) is not None:
        probes.append(probe)
        opt.observe(measure(probe, opt.probe_steps))
    assert probes == [250.0, 200.0, 150.0, 100.0, 150.0]  # sweep, then one confirming window
    # the screening windows do not follow steps_per_probe (a model-driven setting)
    assert opt.best() == 150.0
    assert opt.profiling_steps == 4 * SCREEN_SWEEP_STEPS + SCREEN_DUEL_STEPS == 4 * 5 + 10


def test_screening_respects_the_step_budget_and_max_slowdown() -> None:
    settings = [100.0, 125.0, 150.0, 175.0, 200.0]
    times = dict(zip(settings, [1.5, 1.0, 1.0, 1.0, 1.0], strict=True))  # exact ties
    weights = CostWeights(1.0, 300.0, 300.0, 200.0, max_slowdown=0.2)
    opt = OnlineOptimizer(settings, POWER, weights, steps_per_probe=10, max_profiling_steps=100)
    measure = _screen_measure(times)
    while (probe := opt.next_probe()) is not None:
        opt.observe(measure(probe, opt.probe_steps))
    assert opt.settled and opt.profiling_steps <= 100 + 10
    assert opt.best() != 100.0  # 50% slower than the largest limit: not allowed


def test_screening_works_with_fixed_windows_and_bad_screen_args_are_errors() -> None:
    settings = [150.0, 200.0, 250.0]
    times = dict(zip(settings, [1.3, 1.0, 1.1], strict=True))
    opt = OnlineOptimizer(settings, POWER, CostWeights(1.0, 300.0, 300.0, 250.0), noise_rel=0.01)
    measure = _screen_measure(times)
    while (probe := opt.next_probe()) is not None:
        opt.observe(measure(probe, opt.steps_per_probe))  # a caller that ignores probe_steps
    assert opt.best() == 200.0
    many = OnlineOptimizer([float(s) for s in range(100, 400, 10)], POWER, _weights())
    assert not many.screening and many.probe_steps == many.steps_per_probe
    for bad, message in (
        ({"sweep_steps": 0}, "sweep_steps must be >= 1, got 0"),
        ({"screen_kappa": 0.0}, "screen_kappa and screen_tolerance must be > 0"),
        ({"max_profiling_steps": 0}, "max_profiling_steps must be >= 1, got 0"),
    ):
        with pytest.raises(ConfigError, match=message):
            OnlineOptimizer(settings, POWER, _weights(), **bad)  # type: ignore[arg-type]


def test_zero_slowdown_on_many_power_limits_settles_without_a_scipy_error() -> None:
    # the measured time at the largest limit is below the model's: no root to bracket
    backend = SimulatedBackend("resnet50", noise_rel=0.01, seed=0)
    settings = backend.supported(0, POWER)
    assert len(settings) > 12  # model-based, not screening
    opt = OnlineOptimizer(settings, POWER, _weights(eta=0.5, max_slowdown=0.0))
    _drive(opt, backend, POWER)
    t_max, _ = backend.true_step_at(POWER, max(settings))
    t_best, _ = backend.true_step_at(POWER, opt.best())
    assert opt.settled and t_best <= t_max * 1.001


@pytest.mark.parametrize("settings", [[float("nan"), 1000.0], [1000.0, float("inf")]])
def test_non_finite_settings_are_refused(settings: list[float]) -> None:
    with pytest.raises(ConfigError, match="finite"):
        OnlineOptimizer(settings, CLOCK, _weights())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drift_tolerance": float("nan")}, "drift_tolerance > 0"),
        ({"stop_gain": -1.0}, "stop_gain must be >= 0, got -1.0"),
        ({"stop_gain": float("nan")}, "stop_gain must be >= 0, got nan"),
    ],
)
def test_nan_and_negative_tuning_arguments_are_refused(
    kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        OnlineOptimizer([1000.0, 1980.0], CLOCK, _weights(), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("time_s", "energy_j"), [(float("nan"), 30.0), (float("inf"), 30.0)])
def test_non_finite_windows_are_refused_at_observe(time_s: float, energy_j: float) -> None:
    opt = OnlineOptimizer([float(s) for s in range(345, 1981, 15)], CLOCK, _weights())
    with pytest.raises(ConfigError, match="finite positive time"):
        opt.observe(Measurement(CLOCK, 1980.0, 20, time_s, energy_j))
    assert opt.best() == 1980.0 and opt.next_probe() == 1980.0  # nothing was recorded


def test_screening_budget_and_windows_do_not_follow_the_model_driven_settings() -> None:
    """A controller config's steps_per_probe=20, max_probes=8 (model-driven probes) must not
    starve the screen of its duels, nor make its sweep windows 10 steps long."""
    settings = [100.0, 125.0, 150.0, 175.0, 200.0, 225.0, 250.0]
    opt = OnlineOptimizer(settings, POWER, _weights(), steps_per_probe=20, max_probes=8)
    assert opt.screening and opt.sweep_steps == 5 and opt.screen_steps == 10
    assert opt.max_profiling_steps == 30 * len(settings)
    times = dict(zip(settings, [1.30, 1.12, 1.00, 1.005, 1.10, 1.20, 1.25], strict=True))
    measure = _screen_measure(times)
    while (probe := opt.next_probe()) is not None:
        opt.observe(measure(probe, opt.probe_steps))
    assert opt.probes_used > 8  # duels continue past max_probes, within the step budget
    assert opt.profiling_steps <= 30 * len(settings) + 10


def test_guard_gives_a_close_runner_up_a_second_window_before_settling() -> None:
    settings = [100.0, 150.0, 200.0, 250.0]
    # 150 is truly best; 200 is a close second
    times = dict(zip(settings, [2.0, 0.99, 1.0, 1.6], strict=True))
    runs = {}
    for guard in (0.0, 3.0):
        opt = OnlineOptimizer(
            settings, POWER, CostWeights(1.0, 300.0, 300.0, 250.0), noise_rel=0.01,
            learn_noise=False, screen_kappa=0.5, screen_guard=guard,
        )  # fmt: skip
        measure = _screen_measure(times)
        probes = []
        while (probe := opt.next_probe()) is not None:
            probes.append(probe)
            opt.observe(measure(probe, opt.probe_steps))
        runs[guard] = probes
    assert 200.0 not in runs[0.0][4:]  # without the guard the runner-up keeps its one window
    assert runs[3.0][4:].count(200.0) == 1  # with it, one more before settling


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"screen_steps": 0}, "screen_steps must be >= 1, got 0"),
        ({"screen_guard": -1.0}, "screen_guard must be >= 0, got -1.0"),
        ({"screen_guard": float("nan")}, "screen_guard must be >= 0, got nan"),
    ],
)
def test_bad_screening_arguments_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        OnlineOptimizer([100.0, 200.0], POWER, _weights(), **kwargs)  # type: ignore[arg-type]
