"""The GPU backend contract shared by the nvml, simulated and replay backends.

A backend answers for a set of devices: what they are, which settings they support, the current
setting, energy and power readings, and setters for the SM clock lock and the power limit.
Units: clocks in MHz, power in W, energy in J, time in s. NVML's mW/mJ are converted at its edge.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from enum import StrEnum


class KnobKind(StrEnum):
    """Which GPU setting is tuned."""

    CLOCK = "clock"  # locked SM clock, MHz
    POWER = "power"  # power-management limit, W

    @property
    def unit(self) -> str:
        """Unit of the setting: ``"MHz"`` for the clock, ``"W"`` for the power limit."""
        return "MHz" if self is KnobKind.CLOCK else "W"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Static facts about one GPU."""

    index: int
    name: str
    clocks_mhz: tuple[int, ...]  # supported SM clocks, descending
    power_limits_w: tuple[float, float]  # (min, max)
    default_power_limit_w: float
    has_energy_counter: bool
    can_set: bool  # root / CAP_SYS_ADMIN and no MIG
    mig_enabled: bool = False
    backend: str = "nvml"
    simulated: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Measurement:
    """What a profiled window cost: ``steps`` mini-batches at ``setting`` took ``time_s`` and
    ``energy_j`` (summed over the GPUs)."""

    knob: KnobKind
    setting: float  # MHz or W
    steps: int
    time_s: float
    energy_j: float

    @property
    def step_time_s(self) -> float:
        return self.time_s / self.steps

    @property
    def step_energy_j(self) -> float:
        return self.energy_j / self.steps

    @property
    def avg_power_w(self) -> float:
        return self.energy_j / self.time_s


class GpuBackend(abc.ABC):
    """One vendor/simulation backend over a set of GPUs."""

    name: str = "base"
    #: True for backends whose numbers are not measured on hardware; every output says so.
    simulated: bool = False

    @abc.abstractmethod
    def device_count(self) -> int: ...

    @abc.abstractmethod
    def info(self, index: int) -> DeviceInfo:
        """Raises DeviceError for an unknown index."""

    def supported(self, index: int, knob: KnobKind) -> list[float]:
        """Supported values of ``knob``, ascending (clocks: MHz; power: W in 25 W steps)."""
        info = self.info(index)
        if knob is KnobKind.CLOCK:
            return sorted(float(c) for c in info.clocks_mhz)
        lo, hi = info.power_limits_w
        n = int((hi - lo) // 25)
        return [lo + 25.0 * i for i in range(n + 1)] + ([hi] if (hi - lo) % 25 else [])

    @abc.abstractmethod
    def get(self, index: int, knob: KnobKind) -> float | None:
        """Current setting (None: clock not locked)."""

    @abc.abstractmethod
    def set(self, index: int, knob: KnobKind, value: float) -> None:
        """Apply a setting. Raises DeviceError (unsupported) or PermissionDeniedError."""

    @abc.abstractmethod
    def reset(self, index: int, knob: KnobKind) -> None:
        """Return ``knob`` to the device default (unlock clocks / default power limit)."""

    @abc.abstractmethod
    def energy_j(self, index: int) -> float:
        """Cumulative energy counter in J (DeviceError if the GPU has none)."""

    @abc.abstractmethod
    def power_w(self, index: int) -> float:
        """Instantaneous power draw in W."""

    def now_s(self) -> float:
        """The backend's clock in s (wall-clock monotonic; simulated backends use virtual time)."""
        return time.monotonic()
