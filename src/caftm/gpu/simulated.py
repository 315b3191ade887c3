"""A simulated H100-like GPU driven by caftm's model, in virtual time (SIMULATED, not measured).

Every device answers from :mod:`caftm.gpu.model` with per-workload parameters calibrated so that
the default setting (1980 MHz, 700 W limit) reproduces our H100 probe
(``data/gpu/h100_probe_2026-11-26.json``): ResNet-50 bs128 0.0346 s/step at 537 W, and the 166M GPT
bs32×512 0.0565 s/step at 644 W. β, P_idle and γ are chosen so that the energy-optimal clock sits at
about 63% of f_max (about 20% energy saved at 35–43% slowdown), an interior optimum.

Time is virtual: :meth:`VirtualGpuBackend.run_steps` advances a virtual clock and each device's
energy counter by the steps' duration at the current setting, with seeded multiplicative noise whose
relative standard deviation is ``noise_rel`` for a 20-step window and shrinks as 1/√steps.
Settings can persist across processes in a JSON file (``state_path``), written atomically.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caftm._files import atomic_write_json
from caftm.errors import ConfigError, DeviceError
from caftm.gpu.base import DeviceInfo, GpuBackend, KnobKind, Measurement
from caftm.gpu.model import (
    NOISE_REF_STEPS,
    ModelParams,
    clock_fraction,
    power_at_fraction,
    time_at_fraction,
)

__all__ = [
    "H100_CLOCKS_MHZ",
    "SIM_WORKLOADS",
    "SimWorkload",
    "SimulatedBackend",
    "VirtualGpuBackend",
]

log = logging.getLogger(__name__)

#: Supported SM clocks of the probed H100, descending (345–1980 MHz in 15 MHz steps, 110 values).
H100_CLOCKS_MHZ: tuple[int, ...] = tuple(range(1980, 344, -15))
H100_POWER_LIMITS_W = (200.0, 700.0)
#: Power of a simulated device that runs no steps (the probe saw 75–130 W idle), W.
SIM_IDLE_POWER_W = 100.0
#: Most steps one :meth:`VirtualGpuBackend.run_steps` call accepts (more is surely a mistake).
MAX_RUN_STEPS = 10**9


@dataclass(frozen=True, slots=True)
class SimWorkload:
    """Model parameters of a simulated job at f_max (see :mod:`caftm.gpu.model`)."""

    name: str
    t_max_s: float
    beta: float
    p_idle_w: float
    p_dyn_w: float
    gamma: float

    def params(self, knob: KnobKind, setting_max: float) -> ModelParams:
        return ModelParams(
            knob, setting_max, self.t_max_s, self.beta, self.p_idle_w, self.p_dyn_w, self.gamma
        )


#: Calibrated to the probe file's resnet50_bs128 and gpt_d1024_L8_bs32 rows.
SIM_WORKLOADS: dict[str, SimWorkload] = {
    "resnet50": SimWorkload("resnet50", 0.0346, 0.40, 240.0, 297.0, 3.0),
    "gpt": SimWorkload("gpt", 0.0565, 0.25, 260.0, 384.0, 3.0),
}


class VirtualGpuBackend(GpuBackend):
    """Shared machinery of backends that live in virtual time: clock, energy counters, noise.

    Subclasses implement :meth:`true_step` (noise-free step time and power at the current setting).
    """

    simulated = True
    #: The knob :meth:`measure` tunes when none is named.
    default_knob: KnobKind = KnobKind.CLOCK

    def __init__(self, *, device_count: int, noise_rel: float, seed: int) -> None:
        if device_count < 1:
            raise ConfigError(f"device_count must be >= 1, got {device_count}")
        if not 0.0 <= noise_rel < 0.5:
            raise ConfigError(f"noise_rel must be in [0, 0.5), got {noise_rel}")
        self._count = device_count
        self.noise_rel = noise_rel
        self.reseed(seed)
        self._now_s = 0.0
        self._energy_j = [0.0] * device_count

    # -- hooks -------------------------------------------------------------------------------
    def true_step(self, index: int) -> tuple[float, float]:
        """Noise-free (step_time_s, power_w) of device ``index`` at its current setting."""
        raise NotImplementedError

    def idle_power_w(self, index: int) -> float:
        """Power of a device that is not running steps, W."""
        return 0.0

    # -- contract ------------------------------------------------------------------------------
    def device_count(self) -> int:
        return self._count

    def check_index(self, index: int) -> None:
        """Raise DeviceError unless ``index`` names a device."""
        if not 0 <= index < self._count:
            raise DeviceError(
                f"unknown GPU index {index} on the {self.name} backend "
                f"(it has {self._count} device(s): 0..{self._count - 1})"
            )

    def energy_j(self, index: int) -> float:
        self.check_index(index)
        return self._energy_j[index]

    def power_w(self, index: int) -> float:
        _, power = self.true_step(index)
        return power * self._noise_factor(NOISE_REF_STEPS)

    def now_s(self) -> float:
        """Virtual time in s (starts at 0; advanced only by :meth:`run_steps`)."""
        return self._now_s

    def reseed(self, seed: int) -> None:
        """Restart the noise sequence from ``seed`` (an integer >= 0)."""
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise ConfigError(f"noise seed must be an integer >= 0, got {seed!r}")
        self._rng = np.random.default_rng(seed)

    def _noise_factor(self, steps: int) -> float:
        if self.noise_rel == 0.0:
            return 1.0
        sigma = self.noise_rel * math.sqrt(NOISE_REF_STEPS / max(steps, 1))
        return float(max(0.5, 1.0 + sigma * self._rng.standard_normal()))

    def run_steps(self, index: int, steps: int) -> tuple[float, float]:
        """Run ``steps`` training steps on device ``index`` in virtual time.

        Returns:
            (time_s, energy_j) of the window; the virtual clock and the energy counter advance by
            them (other devices accrue their idle power over the same time).
        """
        self.check_index(index)
        if not 1 <= steps <= MAX_RUN_STEPS:
            raise ConfigError(f"steps must be in [1, {MAX_RUN_STEPS:,}], got {steps}")
        step_time, power = self.true_step(index)
        time_s = steps * step_time * self._noise_factor(steps)
        energy_j = time_s * power * self._noise_factor(steps)
        self._now_s += time_s
        for i in range(self._count):
            self._energy_j[i] += energy_j if i == index else time_s * self.idle_power_w(i)
        return time_s, energy_j

    def measure(
        self, setting: float, steps: int, *, knob: KnobKind | None = None, index: int = 0
    ) -> Measurement:
        """Apply ``setting`` to ``knob`` (default :attr:`default_knob`), run ``steps`` steps and
        report the window (noisy)."""
        knob = knob or self.default_knob
        self.set(index, knob, setting)
        time_s, energy_j = self.run_steps(index, steps)
        return Measurement(
            knob=knob, setting=float(setting), steps=steps, time_s=time_s, energy_j=energy_j
        )


class SimulatedBackend(VirtualGpuBackend):
    """H100-like simulated GPUs (SIMULATED: numbers come from a model, not hardware).

    Args:
        workload: 'resnet50', 'gpt' or custom :class:`SimWorkload` parameters.
        device_count: number of identical devices.
        noise_rel: relative std of a 20-step window's time and energy (0 = noise-free).
        seed: seed of the noise.
        state_path: JSON file where settings persist across processes (None = in memory).
    """

    name = "simulated"

    def __init__(
        self,
        workload: str | SimWorkload = "resnet50",
        *,
        device_count: int = 1,
        noise_rel: float = 0.01,
        seed: int = 0,
        state_path: Path | None = None,
    ) -> None:
        super().__init__(device_count=device_count, noise_rel=noise_rel, seed=seed)
        if isinstance(workload, str):
            if workload not in SIM_WORKLOADS:
                raise ConfigError(
                    f"unknown simulated workload {workload!r}; choose one of "
                    f"{sorted(SIM_WORKLOADS)} or pass SimWorkload(...) parameters"
                )
            workload = SIM_WORKLOADS[workload]
        self.workload = workload
        self.state_path = state_path
        self._clock_mhz: list[float | None] = [None] * device_count
        self._limit_w: list[float] = [H100_POWER_LIMITS_W[1]] * device_count
        self._load_state()

    # -- persistence ---------------------------------------------------------------------------
    def _load_state(self) -> None:
        if self.state_path is None or not self.state_path.exists():
            return
        try:
            devices = json.loads(self.state_path.read_text())["devices"]
            for i, dev in enumerate(devices[: self._count]):
                clock = dev.get("clock_mhz")
                self._clock_mhz[i] = None if clock is None else float(clock)
                self._limit_w[i] = float(dev["power_limit_w"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DeviceError(
                f"simulated GPU state file {self.state_path} is unreadable ({e}); "
                "delete it to reset"
            ) from e

    def _save_state(self) -> None:
        if self.state_path is None:
            return
        devices = [
            {"clock_mhz": c, "power_limit_w": p}
            for c, p in zip(self._clock_mhz, self._limit_w, strict=True)
        ]
        try:
            atomic_write_json(self.state_path, {"simulated": True, "devices": devices})
        except OSError as e:
            raise DeviceError(
                f"cannot write simulated GPU state file {self.state_path} ({e.strerror or e})"
            ) from e

    # -- contract ------------------------------------------------------------------------------
    def info(self, index: int) -> DeviceInfo:
        self.check_index(index)
        return DeviceInfo(
            index=index,
            name="NVIDIA H100 80GB HBM3 (simulated)",
            clocks_mhz=H100_CLOCKS_MHZ,
            power_limits_w=H100_POWER_LIMITS_W,
            default_power_limit_w=H100_POWER_LIMITS_W[1],
            has_energy_counter=True,
            can_set=True,
            backend=self.name,
            simulated=True,
            notes=(
                f"simulated: H100-like model (workload {self.workload.name}), not measured",
                "virtual time: now_s() advances only with run_steps()",
            ),
        )

    def get(self, index: int, knob: KnobKind) -> float | None:
        self.check_index(index)
        return self._clock_mhz[index] if knob is KnobKind.CLOCK else self._limit_w[index]

    def set(self, index: int, knob: KnobKind, value: float) -> None:
        self.check_index(index)
        if knob is KnobKind.CLOCK:
            if not any(abs(value - c) < 1e-6 for c in H100_CLOCKS_MHZ):
                raise DeviceError(
                    f"GPU {index} (simulated) does not support SM clock {value:g} MHz; supported: "
                    f"{H100_CLOCKS_MHZ[-1]}–{H100_CLOCKS_MHZ[0]} MHz in 15 MHz steps"
                )
            if self._clock_mhz[index] == float(value):
                return
            self._clock_mhz[index] = float(value)
        else:
            lo, hi = H100_POWER_LIMITS_W
            if not lo <= value <= hi:
                raise DeviceError(
                    f"GPU {index} (simulated) does not support power limit {value:g} W; "
                    f"supported: {lo:g}–{hi:g} W"
                )
            if self._limit_w[index] == float(value):
                return
            self._limit_w[index] = float(value)
        log.debug("simulated GPU %d: %s set to %g", index, knob, value)
        self._save_state()

    def reset(self, index: int, knob: KnobKind) -> None:
        self.check_index(index)
        if knob is KnobKind.CLOCK:
            self._clock_mhz[index] = None
        else:
            self._limit_w[index] = H100_POWER_LIMITS_W[1]
        self._save_state()

    # -- model -----------------------------------------------------------------------------
    def fraction_at(self, clock_mhz: float | None, limit_w: float) -> float:
        """Effective clock fraction under a clock lock (None = unlocked) and a power limit."""
        f_max = float(H100_CLOCKS_MHZ[0])
        # A hard cap: the device lowers its clock until P(r) <= limit exactly.
        by_power = clock_fraction(
            self.workload.params(KnobKind.POWER, H100_POWER_LIMITS_W[1]), limit_w, soft_cap_k=None
        )
        by_clock = 1.0 if clock_mhz is None else clock_mhz / f_max
        return max(min(float(by_power), by_clock), H100_CLOCKS_MHZ[-1] / f_max)

    def true_step_at(self, knob: KnobKind, setting: float) -> tuple[float, float]:
        """Noise-free (step_time_s, power_w) with ``knob`` at ``setting`` and the other default."""
        if knob is KnobKind.CLOCK:
            return self._step_at_fraction(self.fraction_at(setting, H100_POWER_LIMITS_W[1]))
        return self._step_at_fraction(self.fraction_at(None, setting))

    def true_step(self, index: int) -> tuple[float, float]:
        self.check_index(index)
        return self._step_at_fraction(
            self.fraction_at(self._clock_mhz[index], self._limit_w[index])
        )

    def _step_at_fraction(self, fraction: float) -> tuple[float, float]:
        """Noise-free (step_time_s, power_w) at clock fraction ``fraction``."""
        params = self.workload.params(KnobKind.CLOCK, float(H100_CLOCKS_MHZ[0]))
        return float(time_at_fraction(params, fraction)), float(power_at_fraction(params, fraction))

    def idle_power_w(self, index: int) -> float:
        return SIM_IDLE_POWER_W
