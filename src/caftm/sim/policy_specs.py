"""The policies compared by the simulator, each a :class:`~caftm.control.policies.Policy` with the
threshold and forecast it runs with.

================================  =========================================================
name                              what
================================  =========================================================
``carbon-agnostic``               stays at the start site, GPU at its default clock
``gpu-only``                      stays, never pauses; the GPU setting tuned to the intensity
``seed-caftm``                    the seed's rule: absolute θ (400 g/kWh), then the site
                                  cleanest now (CAFTM's plan on current intensities)
``caftm``                         break-even θ (``auto``): suspend exactly when a move pays
``forecast-caftm``                the forecast-aware policy at the shipped defaults (absolute
                                  θ 400), our forecast (the trace's past only)
``forecast-caftm-oracle``         the same with a perfect forecast (ORACLE)
``forecast-caftm-auto``           forecast-aware with the break-even θ, our forecast
``suspend-resume``                pause when CI ≥ θ (400), resume when clean; never moves
``greedy-cleanest``               always to the site cleanest now, move cost ignored
================================  =========================================================

Every entry uses the shipped defaults (:class:`~caftm.control.config.ControllerConfig`) except
for what its row names. The offline optimum is not a policy: see :mod:`caftm.sim.optimum`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from caftm.control.migration import Plan, PlanKind
from caftm.control.policies import (
    CAFTM,
    CarbonAgnostic,
    ForecastAwareCAFTM,
    GreedyCleanest,
    Policy,
    Rules,
    SuspendResume,
)
from caftm.control.states import ControlState, Observation
from caftm.control.threshold import ThresholdMode, ThresholdSpec
from caftm.errors import ConfigError
from caftm.sim.site_traces import ForecastMode


class GpuOnly(Policy):
    """Frequency optimisation alone: never suspends or moves; Scaling tunes the GPU."""

    name = "gpu-only"

    def suspend_reason(self, ctx: ControlState, obs: Observation) -> str | None:
        return None

    def plan(self, ctx: ControlState, obs: Observation) -> Plan:
        return Plan(PlanKind.STAY, "gpu-only")


@dataclass(frozen=True)
class PolicySpec:
    """A policy as compared: how to build it, its θ, and its forecast."""

    name: str
    build: Callable[[Rules], Policy]
    threshold: ThresholdSpec
    forecast: ForecastMode = "none"
    tune_gpu: bool = True

    @property
    def oracle(self) -> bool:
        """Whether it sees the future (not achievable by a live run)."""
        return self.forecast == "oracle"


_DEFAULT = ThresholdSpec()  # the shipped default: absolute, 400 g/kWh, 10 % hysteresis
_AUTO = ThresholdSpec(ThresholdMode.AUTO)

SPECS: dict[str, PolicySpec] = {
    s.name: s
    for s in (
        PolicySpec("carbon-agnostic", CarbonAgnostic, _DEFAULT),
        PolicySpec("gpu-only", GpuOnly, _DEFAULT),
        PolicySpec("seed-caftm", CAFTM, _DEFAULT),
        PolicySpec("caftm", CAFTM, _AUTO),
        PolicySpec("forecast-caftm", ForecastAwareCAFTM, _DEFAULT, "ours"),
        PolicySpec("forecast-caftm-oracle", ForecastAwareCAFTM, _DEFAULT, "oracle"),
        PolicySpec("forecast-caftm-auto", ForecastAwareCAFTM, _AUTO, "ours"),
        PolicySpec("suspend-resume", SuspendResume, _DEFAULT),
        PolicySpec("greedy-cleanest", GreedyCleanest, _DEFAULT),
    )
}

#: The optimum's name in tables and results.
OPTIMUM = "optimum"

#: The policy a job with no ``policy:`` section gets (the shipped default).
DEFAULT_POLICY = "forecast-caftm"


def get_specs(names: list[str] | None) -> list[PolicySpec]:
    """The specs named (all when None), in the order given.

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    if not names:
        return list(SPECS.values())
    unknown = [n for n in names if n not in SPECS and n != OPTIMUM]
    if unknown:
        raise ConfigError(
            f"unknown policy {unknown[0]!r} in --policies; choose from "
            f"{', '.join([*SPECS, OPTIMUM])}"
        )
    return [SPECS[n] for n in names if n != OPTIMUM]
