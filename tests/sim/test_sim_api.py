"""caftm.sim's public names are pinned, and importing it pulls in neither rich, typer nor
matplotlib (the CLI renders; plots import matplotlib when drawn)."""

from __future__ import annotations

import subprocess
import sys

import caftm.sim


def test_public_names_are_pinned() -> None:
    assert caftm.sim.__all__ == [
        "OPTIMUM",
        "SPECS",
        "Evaluation",
        "ForecastMode",
        "GpuOnly",
        "GpuProfile",
        "JobResult",
        "JobShape",
        "LazyForecast",
        "MoveModel",
        "OptimumResult",
        "PolicySpec",
        "Scenario",
        "Segment",
        "SimEvent",
        "SimJob",
        "SimRun",
        "SiteTraces",
        "TraceView",
        "brute_force",
        "evaluate",
        "get_specs",
        "optimum_carbon",
        "simulate_job",
        "slot_energy_j",
        "solve",
        "start_times",
    ]
    for name in caftm.sim.__all__:
        assert hasattr(caftm.sim, name), name


def test_every_compared_policy_is_listed_with_its_threshold_and_forecast() -> None:
    specs = caftm.sim.SPECS
    assert {
        "carbon-agnostic",
        "gpu-only",
        "seed-caftm",
        "caftm",
        "forecast-caftm",
        "forecast-caftm-oracle",
        "suspend-resume",
        "greedy-cleanest",
    } <= set(specs)
    assert specs["forecast-caftm"].forecast == "ours" and not specs["forecast-caftm"].oracle
    assert specs["forecast-caftm-oracle"].oracle
    assert specs["caftm"].threshold.mode.value == "auto"
    assert specs["seed-caftm"].threshold.value_g_per_kwh == 400.0


def test_importing_the_simulator_pulls_in_no_renderer() -> None:
    code = (
        "import sys, caftm.sim; "
        "print(','.join(m for m in ('rich', 'typer', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
