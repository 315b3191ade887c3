"""The simulator and a live Controller, driven by the same trace through an accelerated clock, take
the same decisions at the same times (one decision path: observe → decide → dispatch)."""

from __future__ import annotations

import pytest
from tests.control.conftest import REAL_ZONES, T0_S, oracle
from tests.sim.sim_support import Decision, drive_controller, wavy_sites

from caftm.control import Rules
from caftm.signals.traces import TraceSource
from caftm.sim import SPECS, GpuProfile, MoveModel, SimJob, SiteTraces, simulate_job

HOURS = 72.0
POLICIES = ["seed-caftm", "caftm", "suspend-resume", "greedy-cleanest", "forecast-caftm-oracle"]


def _both(
    trace: TraceSource, sites: list[str], start: str, name: str, start_s: float = T0_S
) -> tuple[list[Decision], list[Decision]]:
    spec = SPECS[name]
    gpu = GpuProfile.simulated("gpt")
    move = MoveModel().cost(2.0)
    rules = Rules(move_cost=move)  # no deadline; the job outlasts the horizon
    traces = SiteTraces(trace, {s: s for s in sites})
    job = SimJob(1000.0, start, start_s)  # longer than the window compared
    result = simulate_job(
        spec.build(rules),
        job,
        traces,
        gpu,
        threshold=spec.threshold,
        forecast=spec.forecast,
        tune_gpu=False,
    )
    simulated = [
        Decision(e.time_s, e.from_state.value, e.to_state.value, e.site, e.reason)
        for e in result.events
        if e.time_s < start_s + (HOURS - 1.0) * 3600.0
    ]
    source = oracle(trace) if spec.forecast == "oracle" else trace
    live = drive_controller(
        spec.build(rules),
        source,
        sites,
        start,
        hours=HOURS - 1.0,
        threshold=spec.threshold,
        power_w=gpu.power_at(None),
        idle_power_w=gpu.idle_power_w,
        downtime_s=move.downtime_s,
        start_s=start_s,
    )
    cutoff = start_s + (HOURS - 1.0) * 3600.0  # the live run may pause past its last poll
    return simulated, [d for d in live if d.time_s < cutoff]


@pytest.mark.parametrize("name", POLICIES)
def test_synthetic_trace_same_decisions_at_same_times(name: str) -> None:
    simulated, live = _both(wavy_sites(), ["A", "B", "C"], "A", name)
    assert len(simulated) >= 3, "the SYNTHETIC trace should make the policy act"
    assert simulated == live


@pytest.mark.parametrize("name", POLICIES)
def test_real_trace_same_decisions_at_same_times(name: str, real_trace: TraceSource) -> None:
    start_s = T0_S + 40 * 86_400  # mid-February 2022
    simulated, live = _both(real_trace, list(REAL_ZONES), "KR", name, start_s)
    assert simulated, "starting in KR the policy should act"
    assert simulated == live


def test_a_pause_and_a_move_are_among_the_compared_decisions() -> None:
    kinds = set()
    for name in ("suspend-resume", "seed-caftm"):
        simulated, _ = _both(wavy_sites(), ["A", "B", "C"], "A", name)
        kinds |= {d.to_state for d in simulated}
    assert {"paused", "migration", "suspend"} <= kinds


@pytest.mark.parametrize("name", ["planner", "planner-oracle"])
def test_the_planner_takes_the_same_decisions_live_and_simulated(name: str) -> None:
    """A 30 h job with the default deadline (1.1×): the planner's waits and moves, at the same
    times, in the simulator and in a live Controller that counts its steps (one per hour)."""
    trace, sites, start_s = wavy_sites(), ["A", "B", "C"], T0_S + 50 * 3600.0
    spec = SPECS[name]
    gpu = GpuProfile.simulated("gpt")
    # moves without downtime: every hour's work is whole, as the live run counts it (a step an hour)
    move = MoveModel(restart_s=0.0).cost(0.0)
    job = SimJob(30.0, "A", start_s)
    traces = SiteTraces(trace, {s: s for s in sites})
    result = simulate_job(
        spec.build(Rules(move_cost=move)),
        job,
        traces,
        gpu,
        threshold=spec.threshold,
        forecast=spec.forecast,
        tune_gpu=False,
    )
    assert result.finished
    simulated = [
        Decision(e.time_s, e.from_state.value, e.to_state.value, e.site, e.reason)
        for e in result.events
        if e.to_state.value != "done"
    ]
    live = drive_controller(
        spec.build(Rules(move_cost=move)),
        oracle(trace) if spec.forecast == "oracle" else trace,
        sites,
        "A",
        hours=(result.finish_s - start_s) / 3600.0,
        threshold=spec.threshold,
        power_w=gpu.power_at(None),
        idle_power_w=gpu.idle_power_w,
        downtime_s=move.downtime_s,
        start_s=start_s,
        total_steps=30,
    )
    kinds = {d.to_state for d in simulated}
    assert {"paused", "migration"} & kinds, "the SYNTHETIC trace should make the planner act"
    assert simulated == live[: len(simulated)]
