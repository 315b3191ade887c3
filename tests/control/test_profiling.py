"""The Scaling state's probe windows run as long as the optimiser asks and feed it back."""

from __future__ import annotations

from dataclasses import dataclass

from caftm.control.profiling import Profiler
from caftm.gpu.base import KnobKind, Measurement
from caftm.gpu.cost import CostWeights
from caftm.gpu.optimizer import OnlineOptimizer
from caftm.gpu.simulated import SimulatedBackend

POWER = KnobKind.POWER


@dataclass(frozen=True)
class _Window:
    time_s: float
    energy_j: float


class _VirtualMeter:
    """Windows in the simulated GPU's virtual time (the meter is not under test here)."""

    def __init__(self, backend: SimulatedBackend) -> None:
        self.backend = backend
        self.open: dict[str, tuple[float, float]] = {}

    def begin(self, name: str) -> _Window:
        self.open[name] = (self.backend.now_s(), self.backend.energy_j(0))
        return _Window(0.0, 0.0)

    def end(self, name: str) -> _Window:
        t0, e0 = self.open.pop(name)
        return _Window(self.backend.now_s() - t0, self.backend.energy_j(0) - e0)


def _train(profiler: Profiler, backend: SimulatedBackend, max_steps: int) -> int:
    steps = 0
    profiler.restart(steps)
    while not profiler.settled and steps < max_steps:
        backend.run_steps(0, 1)
        steps += 1
        profiler.advance(steps, now=float(steps))
    return steps


def test_probes_follow_the_optimisers_window_lengths_until_it_settles() -> None:
    backend = SimulatedBackend("resnet50", noise_rel=0.005, seed=2)
    limits = [float(w) for w in range(300, 701, 100)]  # 5 settings: the optimiser screens
    opt = OnlineOptimizer(
        limits, POWER, CostWeights(1.0, 300.0, 300.0, 700.0), steps_per_probe=10, sweep_steps=3
    )
    applied: list[float] = []
    windows: list[Measurement] = []
    profiler = Profiler(
        opt,
        _VirtualMeter(backend),
        POWER,
        steps_per_probe=10,
        apply_setting=lambda s: (applied.append(s), backend.set(0, POWER, s)),
        on_window=lambda m, now: windows.append(m),
    )
    steps = _train(profiler, backend, max_steps=1000)
    assert profiler.settled and profiler.probing is None
    assert profiler.best_setting == opt.best()
    # the sweep: every limit once, largest first, in 3-step windows; then 10-step duel windows
    assert applied[:5] == sorted(limits, reverse=True)
    assert [m.steps for m in windows[:5]] == [3] * 5
    assert all(m.steps == 10 for m in windows[5:])
    assert sum(m.steps for m in windows) == steps == opt.profiling_steps
    assert [m.setting for m in windows] == applied


def test_leaving_scaling_abandons_the_open_probe_unused() -> None:
    backend = SimulatedBackend("gpt", noise_rel=0.0)
    opt = OnlineOptimizer(backend.supported(0, POWER), POWER, CostWeights(1.0, 300.0, 300.0, 700.0))
    meter = _VirtualMeter(backend)
    windows: list[Measurement] = []
    profiler = Profiler(opt, meter, POWER, 10, lambda s: None, lambda m, now: windows.append(m))
    profiler.restart(0)
    assert profiler.probing == 700.0 and "caftm-probe" in meter.open
    profiler.abandon()
    assert profiler.probing is None and not meter.open and opt.probes_used == 0 and not windows


def test_without_an_optimiser_it_is_settled_at_once() -> None:
    profiler = Profiler(None, None, POWER, 10, lambda s: None, lambda m, now: None)
    profiler.restart(0)
    assert profiler.settled and profiler.best_setting is None and profiler.probing is None
