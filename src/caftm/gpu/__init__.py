"""caftm.gpu: meter, knob, backends (nvml | simulated | replay), model, cost and optimiser.

Callers never import pynvml: :func:`get_backend` picks a backend by name (``auto`` detects NVML and
falls back to the SIMULATED H100); :class:`EnergyMeter` measures windows of time and energy off the
training step's path; :class:`GpuKnob` / :func:`knob_session` change the SM clock or power limit
and always restore the original; :class:`OnlineOptimizer` finds the cheapest setting in a few
probes and :func:`exhaustive_search` is the Zeus-style baseline.

The numpy/scipy-backed names (model, cost, optimiser, simulated and replay backends) are imported
on first use, so ``import caftm.gpu`` (and the CLI) stays quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from caftm.gpu.backends import available_backends, get_backend, register_backend
from caftm.gpu.base import DeviceInfo, GpuBackend, KnobKind, Measurement
from caftm.gpu.knob import GpuKnob, default_state_dir, knob_session, recover_stale
from caftm.gpu.meter import EnergyMeter, WindowResult

if TYPE_CHECKING:
    from caftm.gpu.cost import CostWeights, step_cost
    from caftm.gpu.exhaustive import ExhaustiveResult, exhaustive_search, sweep
    from caftm.gpu.model import ModelParams, fit_model
    from caftm.gpu.optimizer import OnlineOptimizer
    from caftm.gpu.replay import ReplayBackend
    from caftm.gpu.simulated import SimulatedBackend, VirtualGpuBackend

#: Public names imported on first access: name -> module.
_LAZY = {
    "CostWeights": "caftm.gpu.cost",
    "ExhaustiveResult": "caftm.gpu.exhaustive",
    "ModelParams": "caftm.gpu.model",
    "OnlineOptimizer": "caftm.gpu.optimizer",
    "ReplayBackend": "caftm.gpu.replay",
    "SimulatedBackend": "caftm.gpu.simulated",
    "VirtualGpuBackend": "caftm.gpu.simulated",
    "exhaustive_search": "caftm.gpu.exhaustive",
    "fit_model": "caftm.gpu.model",
    "step_cost": "caftm.gpu.cost",
    "sweep": "caftm.gpu.exhaustive",
}

__all__ = [
    "CostWeights",
    "DeviceInfo",
    "EnergyMeter",
    "ExhaustiveResult",
    "GpuBackend",
    "GpuKnob",
    "KnobKind",
    "Measurement",
    "ModelParams",
    "OnlineOptimizer",
    "ReplayBackend",
    "SimulatedBackend",
    "VirtualGpuBackend",
    "WindowResult",
    "available_backends",
    "default_state_dir",
    "exhaustive_search",
    "fit_model",
    "get_backend",
    "knob_session",
    "recover_stale",
    "register_backend",
    "step_cost",
    "sweep",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'caftm.gpu' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
