"""The policies bench: its family of site sets, and its check that no policy beats the optimum."""

from __future__ import annotations

import functools
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import shared_file
from tests.control.conftest import synthetic_source

from caftm.control.migration import MoveCost
from caftm.control.policies import GreedyCleanest, Rules
from caftm.signals.traces import load_trace
from caftm.sim import GpuProfile, JobShape, Scenario, SiteTraces, evaluate, get_specs
from caftm.sim.policy_specs import PolicySpec

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import policies as bench


@functools.cache
def _family() -> tuple[list[bench.SiteSet], dict[str, float]]:
    trace = load_trace(shared_file(bench.TRACE))
    lowest = np.min(trace.values, axis=1)
    exports = ["BR", "ES", "NO", "US-CAL-CISO"]
    sets = bench.family_sets(trace.zones(), lowest.tolist(), exports)
    return sets, dict(zip(trace.zones(), lowest.tolist(), strict=True))


def test_the_family_is_drawn_the_same_every_time_and_has_every_kind_of_set() -> None:
    sets, lowest = _family()
    trace_zones, values = list(lowest), list(lowest.values())
    assert bench.family_sets(trace_zones, values, ["BR", "ES", "NO", "US-CAL-CISO"]) == sets
    kinds = {s.kind for s in sets}
    assert kinds == {"pair", "triple", "quad", "six", "dirty", "single", "cross-year"}
    sizes = {s.kind: len(s.zones) for s in sets if s.kind != "dirty"}
    assert sizes["pair"] == 2 and sizes["six"] == 6 and sizes["single"] == 1
    dirty = [s for s in sets if s.kind == "dirty"]
    assert dirty and all(lowest[z] >= bench.DIRTY_FLOOR for s in dirty for z in s.zones)
    bases = {s.source for s in sets if s.kind == "cross-year"}
    assert bases == {"export-direct", "export-lifecycle"}
    assert len({s.zones for s in sets if s.source == "lca-2022"}) == len(
        [s for s in sets if s.source == "lca-2022"]
    )  # no set drawn twice


def test_family_starts_are_in_2022_and_walk_round_the_clock() -> None:
    starts = bench.family_starts()
    hours = {int((t // 3600) % 24) for t in starts}
    assert starts[0] == bench.YEAR_2022_S and len(hours) > 12
    assert all(t < bench.YEAR_2022_S + 365 * 86_400 for t in starts)


def _two_sites(hours: int = 96) -> SiteTraces:
    t = np.arange(hours)
    a = np.where(t % 2 == 0, 100.0, 600.0)  # SYNTHETIC: the two sites swap every hour
    b = np.where(t % 2 == 0, 600.0, 100.0)
    return SiteTraces(synthetic_source({"A": a.tolist(), "B": b.tolist()}), {"A": "A", "B": "B"})


def test_the_bench_fails_when_a_policy_beats_the_optimum() -> None:
    traces = _two_sites()
    shapes = [JobShape(12.0, deadline_factor=1.0)]  # no slack: no real move fits
    gpu = GpuProfile.simulated("gpt")
    honest = evaluate(
        [Scenario("swap", traces, "A")],
        shapes,
        get_specs(["carbon-agnostic", "greedy-cleanest"]),
        gpu=gpu,
        every_s=12 * 3600.0,
        processes=1,
    )
    assert bench.check_optimum([honest]) == 0
    # a cheat: its moves cost no time, and it is told a later deadline so that it dares them
    free = MoveCost(checkpoint_s=0.0, transfer_s=0.0, restart_s=0.0)

    def teleport(rules: Rules) -> GreedyCleanest:
        assert rules.deadline_s is not None
        return GreedyCleanest(replace(rules, move_cost=free, deadline_s=rules.deadline_s + 3600))

    cheat = PolicySpec(
        "teleport",
        teleport,
        get_specs(["greedy-cleanest"])[0].threshold,
    )
    cheating = evaluate(
        [Scenario("swap", traces, "A")],
        shapes,
        [*get_specs(["carbon-agnostic"]), cheat],
        gpu=gpu,
        every_s=12 * 3600.0,
        processes=1,
    )
    figures = cheating.figures("teleport")
    assert figures.beats_optimum == figures.carbon_g.size and not figures.missed.any()
    with pytest.raises(AssertionError, match="teleport"):
        bench.check_optimum([honest, cheating])


def test_the_starts_thin_with_the_environment_and_refuse_a_bad_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(bench.EVERY_H_ENV, raising=False)
    assert bench.headline_every_h() == 6.0
    assert bench.family_every_h() == bench.FAMILY_EVERY_H
    monkeypatch.setenv(bench.EVERY_H_ENV, "24")
    assert bench.headline_every_h() == 24.0
    assert bench.family_every_h() == bench.FAMILY_EVERY_H * 4
    monkeypatch.setenv(bench.EVERY_H_ENV, "10000")  # the family keeps two starts
    assert len(bench.family_starts(bench.family_every_h())) == 2
    for bad in ("0", "1.5", "six"):
        monkeypatch.setenv(bench.EVERY_H_ENV, bad)
        with pytest.raises(ValueError, match=bench.EVERY_H_ENV):
            bench.headline_every_h()
