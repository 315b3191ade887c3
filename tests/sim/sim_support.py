"""Helpers of the simulator tests: SYNTHETIC traces (generated here, labelled so) and a driver that
runs a live Controller over a trace with a fake clock, polling once per trace step."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tests.control.conftest import T0_S, FakeClock, synthetic_source

from caftm.control import Controller, Hooks, Policy, ThresholdSpec
from caftm.ledger import Ledger
from caftm.records import Event
from caftm.signals.base import IntensitySource
from caftm.signals.refresher import IntensityRefresher
from caftm.signals.traces import TraceSource


def wavy_sites(hours: int = 120, seed: int = 3) -> TraceSource:
    """Three SYNTHETIC sites: A dirty with a daily wave, B medium and windy, C clean with spikes."""
    rng = np.random.default_rng(seed)
    t = np.arange(hours)
    a = 430 + 120 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 25, hours)
    b = 300 + 140 * np.sin(2 * np.pi * (t + 7) / 24) + rng.normal(0, 40, hours)
    c = 120 + 60 * np.sin(2 * np.pi * (t + 15) / 24) + rng.normal(0, 15, hours)
    c[rng.integers(0, hours, hours // 8)] += 400  # spikes
    series = {"A": np.clip(a, 5, 900), "B": np.clip(b, 5, 900), "C": np.clip(c, 5, 900)}
    return synthetic_source({k: v.tolist() for k, v in series.items()})


@dataclass
class Decision:
    """A transition, comparable between the controller and the simulator."""

    time_s: float
    from_state: str
    to_state: str
    site: str
    reason: str


def drive_controller(
    policy: Policy,
    source: IntensitySource,
    sites: list[str],
    start_site: str,
    *,
    hours: float,
    threshold: ThresholdSpec,
    power_w: float,
    idle_power_w: float,
    downtime_s: float,
    step_s: float = 3600.0,
    start_s: float = T0_S,
    total_steps: int | None = None,
    ledger: Ledger | None = None,
) -> list[Decision]:
    """Run a live Controller (no GPU optimiser) over ``source`` with an accelerated fake clock:
    one poll and one ``step()`` per trace step; a move lets ``downtime_s`` pass, a pause jumps
    the clock to its end. ``total_steps``: the job's length in steps of one trace step each (so
    the controller knows the work left, as a planner needs)."""
    clock = FakeClock(start_s)
    refresher = IntensityRefresher(
        source,
        {s: s for s in sites},
        start_site,
        interval_s=step_s,
        clock=clock,
        want_forecast=policy.uses_forecast,
    )

    def pause(until_s: float) -> None:
        clock.now_s = max(clock.now_s, until_s)

    controller = Controller(
        policy,
        refresher,
        threshold=threshold,
        hooks=Hooks(migrate=lambda _dest: clock.advance(downtime_s), pause=pause),
        power_w=power_w,
        idle_power_w=idle_power_w,
        clock=clock,
        simulated=True,
        total_steps=total_steps,
        step_time_s=step_s if total_steps is not None else None,
        ledger=ledger,
    )
    controller.start(run_refresher_thread=False)
    end_s = start_s + hours * 3600.0
    while True:
        tick = start_s + (math.floor((clock.now_s - start_s) / step_s) + 1) * step_s
        if tick >= end_s:
            break
        clock.now_s = tick
        refresher.refresh_once()
        controller.step()
    return [_decision(e) for e in controller.events[1:]]  # [0]: "run started"


def _decision(event: Event) -> Decision:
    return Decision(
        event.time.timestamp(),
        event.from_state.value,
        event.to_state.value,
        event.site,
        event.reason,
    )
