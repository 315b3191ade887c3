"""evaluate(): one SiteTraces shared by every policy gives what a fresh one per policy gives."""

from __future__ import annotations

from tests.sim.sim_support import wavy_sites

from caftm.sim import SPECS, GpuProfile, JobShape, Scenario, SiteTraces, evaluate

GPU = GpuProfile.simulated("gpt")
SITES = {s: s for s in ("A", "B", "C")}
# the memo of a shared SiteTraces must keep each forecast mode apart: "none" (most policies)
# and "oracle" read the same columns, so the oracle policy runs after "none" ones here (with one
# memo key per column, the oracle policy saw no forecast and moved 3 times instead of pausing)
NAMES = ("carbon-agnostic", "seed-caftm", "suspend-resume", "forecast-caftm-oracle")


def _results(names: tuple[str, ...], traces: SiteTraces) -> dict[str, list[tuple[float, ...]]]:
    evaluation = evaluate(
        [Scenario("S", traces, "A")],
        [JobShape(12.0)],
        [SPECS[n] for n in names],
        gpu=GPU,
        every_s=9 * 3600.0,
        processes=1,
        optimum=False,
    )
    return {
        key[2]: [(r.carbon_g, r.jct_s, r.moves, r.pauses) for r in rows]
        for key, rows in evaluation.results.items()
    }


def test_a_shared_site_traces_gives_the_results_of_a_fresh_one_per_policy() -> None:
    trace = wavy_sites(hours=96)
    shared = _results(NAMES, SiteTraces(trace, SITES))
    for name in NAMES:
        alone = _results((name,), SiteTraces(trace, SITES))
        assert shared[name] == alone[name], name


def test_the_evaluation_says_what_each_part_cost_and_how_many_plans_were_solved() -> None:
    evaluation = evaluate(
        [Scenario("S", SiteTraces(wavy_sites(hours=96), SITES), "A")],
        [JobShape(12.0)],
        [SPECS[n] for n in ("carbon-agnostic", "planner")],
        gpu=GPU,
        every_s=24 * 3600.0,
        processes=1,
    )
    jobs = len(evaluation.results[("S", 12.0, "planner")])
    assert jobs >= 2
    assert evaluation.solves("carbon-agnostic") == 0
    assert evaluation.solves("planner") >= jobs  # at least one plan per job
    parts = evaluation.cpu_seconds_by_part
    assert {"carbon-agnostic", "planner", "optimum", "forecasts"} <= set(parts)
    assert all(cpu >= 0.0 for cpu in parts.values())
    assert parts["planner"] > parts["carbon-agnostic"]  # planning costs more than staying
    assert sum(parts.values()) <= evaluation.cpu_seconds * 1.05 + 0.05
