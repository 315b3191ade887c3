"""caftm.control: the CAFTM state machine, one Policy interface, and the live controller.

>>> from caftm.control import CAFTM, ControlState, transition
>>> policy = CAFTM()

The states themselves (:class:`~caftm.records.State`) and the recorded transitions
(:class:`~caftm.records.Event`) are in :mod:`caftm.records`, shared with the ledger.

The pure :func:`transition` (its table is in its module docstring) is shared by the live
:class:`Controller` and the trace-driven simulator.
"""

from __future__ import annotations

from caftm.control.config import ControllerConfig, apply_env
from caftm.control.controller import Controller
from caftm.control.hooks import GpuOptimizer, Hooks, WindowMeter
from caftm.control.migration import MoveCost, Plan, PlanKind, score_moves, score_wait
from caftm.control.policies import (
    CAFTM,
    POLICIES,
    CarbonAgnostic,
    ForecastAwareCAFTM,
    GreedyCleanest,
    Policy,
    Rules,
    SuspendResume,
    make_policy,
)
from caftm.control.states import (
    Action,
    ApplySetting,
    Band,
    Checkpoint,
    ControlState,
    Finish,
    Migrate,
    Observation,
    Pause,
    Preempt,
    Resume,
    SiteOutlook,
    StartProfiling,
    Step,
)
from caftm.control.threshold import ThresholdMode, ThresholdSpec, compute_band
from caftm.control.transition import transition

__all__ = [
    "CAFTM",
    "POLICIES",
    "Action",
    "ApplySetting",
    "Band",
    "CarbonAgnostic",
    "Checkpoint",
    "ControlState",
    "Controller",
    "ControllerConfig",
    "Finish",
    "ForecastAwareCAFTM",
    "GpuOptimizer",
    "GreedyCleanest",
    "Hooks",
    "Migrate",
    "MoveCost",
    "Observation",
    "Pause",
    "Plan",
    "PlanKind",
    "Policy",
    "Preempt",
    "Resume",
    "Rules",
    "SiteOutlook",
    "StartProfiling",
    "Step",
    "SuspendResume",
    "ThresholdMode",
    "ThresholdSpec",
    "WindowMeter",
    "apply_env",
    "compute_band",
    "make_policy",
    "score_moves",
    "score_wait",
    "transition",
]
