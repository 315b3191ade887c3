"""Drive a real Controller with a fake clock, a trace-backed source and the fake GPU.

No real sleeping: pauses move the fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.control.conftest import FakeClock, FakeGpu, FakeMeter

from caftm.control import Controller, Hooks, Policy, ThresholdMode, ThresholdSpec
from caftm.gpu.base import KnobKind
from caftm.gpu.cost import CostWeights
from caftm.gpu.optimizer import OnlineOptimizer
from caftm.ledger import Ledger
from caftm.records import State
from caftm.signals.base import IntensitySource
from caftm.signals.refresher import IntensityRefresher

CLOCKS_MHZ = [float(f) for f in range(900, 1981, 90)]


@dataclass
class Run:
    controller: Controller
    refresher: IntensityRefresher
    gpu: FakeGpu
    clock: FakeClock
    moves: list[str] = field(default_factory=list)
    pauses: list[tuple[float, float]] = field(default_factory=list)
    checkpoints: int = 0
    states: dict[State, int] = field(default_factory=dict)

    def drive(self, steps: int, *, refresh_every_s: float = 300.0) -> None:
        """Train ``steps`` mini-batches, polling the source every ``refresh_every_s`` (fake s)."""
        controller, refresher, gpu, clock = self.controller, self.refresher, self.gpu, self.clock
        for _ in range(steps):
            gpu.train_step()
            if clock.now_s - refresher.last_refresh_s >= refresh_every_s:
                refresher.refresh_once()
            state = controller.step()
            self.states[state] = self.states.get(state, 0) + 1


def build(
    policy: Policy,
    source: IntensitySource,
    site_zones: dict[str, str],
    site: str,
    clock: FakeClock,
    *,
    threshold: ThresholdSpec | None = None,
    tune_gpu: bool = True,
    ledger: Ledger | None = None,
    total_steps: int | None = None,
    step_time_s: float = 0.2,
    window_steps: int = 200,
    forecast: bool = False,
    checkpoint_fails: bool = False,
    job_clock_speed: float = 1.0,
) -> Run:
    """A controller on ``clock``; with ``job_clock_speed`` ≠ 1 the controller and the source
    read an accelerated job clock while the GPU and its meter keep ``clock``'s pace."""
    gpu = FakeGpu(clock, t_max_s=step_time_s)
    t0 = clock.now_s
    job_clock = (
        clock if job_clock_speed == 1.0 else (lambda: t0 + job_clock_speed * (clock.now_s - t0))
    )
    relative = threshold is not None and threshold.mode is ThresholdMode.RELATIVE
    refresher = IntensityRefresher(
        source,
        site_zones,
        site,
        interval_s=300.0,
        clock=job_clock,
        want_forecast=forecast or policy.uses_forecast or relative,
    )
    run_box: list[Run] = []

    def checkpoint() -> None:
        run_box[0].checkpoints += 1
        if checkpoint_fails:
            raise OSError("disk full (test)")

    def pause(until_s: float) -> None:
        run_box[0].pauses.append((clock.now_s, until_s))
        clock.now_s = max(clock.now_s, until_s)

    hooks = Hooks(
        apply_setting=gpu.apply,
        checkpoint=checkpoint,
        migrate=lambda dest: run_box[0].moves.append(dest),
        pause=pause,
    )
    weights = CostWeights(0.5, 300.0, 400.0, 700.0)
    optimizer = (
        OnlineOptimizer(CLOCKS_MHZ, KnobKind.CLOCK, weights, steps_per_probe=20, max_probes=6)
        if tune_gpu
        else None
    )
    controller = Controller(
        policy,
        refresher,
        threshold=threshold,
        hooks=hooks,
        optimizer=optimizer,
        meter=FakeMeter(gpu) if tune_gpu else None,
        weights=weights,
        ledger=ledger,
        total_steps=total_steps,
        steps_per_probe=20,
        window_steps=window_steps,
        clock=job_clock,
        simulated=True,
    )
    run = Run(controller, refresher, gpu, clock)
    run_box.append(run)
    controller.start(run_refresher_thread=False)
    return run
