"""The GPU side of an integration: backend, knob, meter and optimiser built from the config.

With no NVIDIA GPU, ``get_backend("auto")`` gives the SIMULATED H100: settings, time and energy
then come from caftm's model in virtual time (each training step runs one simulated step), and
every description says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from caftm.control.config import ControllerConfig
from caftm.gpu import EnergyMeter, GpuBackend, GpuKnob, get_backend
from caftm.gpu.cost import CostWeights
from caftm.gpu.optimizer import OnlineOptimizer

__all__ = ["GpuSetup"]

log = logging.getLogger(__name__)


@dataclass
class GpuSetup:
    """The GPU pieces the controller drives.

    Attributes:
        backend: the devices' backend (NVML or simulated).
        knob: sets the clock or power limit; restores it on close.
        meter: energy windows for the optimiser.
        optimizer: finds the cheapest setting in Scaling.
        weights: the cost weights it minimises.
    """

    backend: GpuBackend
    knob: GpuKnob
    meter: EnergyMeter
    optimizer: OnlineOptimizer
    weights: CostWeights

    @classmethod
    def from_config(
        cls,
        config: ControllerConfig,
        backend: GpuBackend | str = "auto",
        *,
        knob_state_dir: Path | None = None,
    ) -> GpuSetup:
        """Build everything for ``config.gpu`` on ``backend`` (a backend or its name).

        Raises:
            ConfigError, DeviceError: as the backend, knob and optimiser raise them.
        """
        if isinstance(backend, str):
            backend = get_backend(backend)
        gpu = config.gpu
        knob = GpuKnob(backend, kind=gpu.knob, state_dir=knob_state_dir, handle_signals=False)
        max_power_w = backend.info(0).power_limits_w[1]
        weights = CostWeights(
            eta=config.policy.eta,
            intensity_g_per_kwh=gpu.ref_intensity_g_per_kwh,
            ref_intensity_g_per_kwh=gpu.ref_intensity_g_per_kwh,
            ref_power_w=max_power_w,
        )
        optimizer = OnlineOptimizer(
            knob.supported(),
            gpu.knob,
            weights,
            steps_per_probe=gpu.steps_per_probe,
            max_probes=gpu.max_probes,
            reoptimize_ci_fraction=config.policy.reoptimize_ci_fraction,
        )
        return cls(backend, knob, EnergyMeter(backend), optimizer, weights)

    @property
    def can_set(self) -> bool:
        """Whether this process may change the settings of every GPU (root or CAP_SYS_ADMIN)."""
        return all(self.backend.info(i).can_set for i in self.knob.indices)

    @property
    def simulated(self) -> bool:
        """True when the numbers come from a model, not hardware."""
        return bool(self.backend.simulated)

    def describe(self) -> str:
        """One line naming the GPU, and saying SIMULATED when it is."""
        info = self.backend.info(0)
        prefix = "SIMULATED GPU (not measured): " if self.simulated else "GPU: "
        return f"{prefix}{info.name} via {self.backend.name}, knob {self.knob.kind.value}"

    def run_simulated_step(self) -> None:
        """Advance a simulated backend by one training step on every GPU (no-op on hardware)."""
        run_steps = getattr(self.backend, "run_steps", None)
        if self.simulated and run_steps is not None:
            for index in self.knob.indices:
                run_steps(index, 1)
