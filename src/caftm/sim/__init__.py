"""caftm.sim: the trace-driven simulator, the offline optimum, and policy evaluation.

The simulator replays real intensity traces through the same ``Policy.decide`` (the pure
transition), the same observation builder (:mod:`caftm.control.observe`) and action dispatcher
(:mod:`caftm.control.dispatch`) as a live controller, and the same GPU model code (the
``simulated`` or ``replay`` backends); results are SIMULATED, never measured.

>>> from caftm.sim import SimJob, simulate_job, SPECS   # doctest: +SKIP
"""

from __future__ import annotations

from caftm.sim.engine import JobResult, Segment, SimEvent, SimRun, simulate_job
from caftm.sim.evaluate import (
    Evaluation,
    JobShape,
    Scenario,
    evaluate,
    optimum_carbon,
    start_times,
)
from caftm.sim.gpu_profile import GpuProfile
from caftm.sim.job import MoveModel, SimJob
from caftm.sim.optimum import OptimumResult, brute_force, slot_energy_j, solve
from caftm.sim.policy_specs import OPTIMUM, SPECS, GpuOnly, PolicySpec, get_specs
from caftm.sim.site_traces import ForecastMode, LazyForecast, SiteTraces, TraceView

__all__ = [
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
