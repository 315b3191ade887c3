"""The GPU as the simulator sees it: step time and power per setting, from a GPU backend.

A :class:`GpuProfile` tabulates, for every setting a ``simulated`` or ``replay`` backend supports,
the noise-free step time and power that backend's model gives (:meth:`true_step_at`): the
simulator calls the same GPU model code as a live run on those backends, it does not carry a model
of its own. Scaling in the simulator settles at once on the setting that minimises the per-step
cost of :mod:`caftm.gpu.cost` at the current intensity — what the online optimiser converges to
on a noise-free device (its few profiling steps are not charged).

Units: s, W, MHz or W for settings, gCO2eq/kWh.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from caftm.control.planning import GpuCurve
from caftm.errors import ConfigError
from caftm.gpu.base import KnobKind
from caftm.gpu.cost import CostWeights, step_cost_array

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class GpuProfile:
    """Step time and power of one device per setting (noise-free; SIMULATED or REPLAYED).

    Attributes:
        label: where the numbers come from (e.g. ``simulated H100, workload gpt``).
        knob: which setting the values are for.
        settings: supported settings, descending (MHz or W); the first is the default.
        step_time_s: step time at each setting, s.
        power_w: average training power at each setting, W.
        idle_power_w: power of a device that holds the job but runs no steps, W.
        eta: carbon-vs-time weight of the cost the optimiser minimises (config ``policy.eta``).
        ref_intensity_g_per_kwh: CI_ref of that cost.
        ref_power_w: P_ref of that cost (the largest power limit).
    """

    label: str
    knob: KnobKind
    settings: FloatArray
    step_time_s: FloatArray
    power_w: FloatArray
    idle_power_w: float
    eta: float = 0.5
    ref_intensity_g_per_kwh: float = 400.0
    ref_power_w: float = 700.0
    _best: dict[float, int] = field(default_factory=dict, repr=False, compare=False)
    _rows: dict[float | None, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = self.settings.size
        if n == 0 or self.step_time_s.shape != (n,) or self.power_w.shape != (n,):
            raise ConfigError(f"GPU profile {self.label}: settings, times and powers disagree")
        if not (np.all(self.step_time_s > 0) and np.all(np.isfinite(self.power_w))):
            raise ConfigError(f"GPU profile {self.label}: non-positive step time or bad power")

    @classmethod
    def from_backend(
        cls,
        backend: object,
        knob: KnobKind,
        *,
        label: str,
        eta: float = 0.5,
        ref_intensity_g_per_kwh: float = 400.0,
    ) -> GpuProfile:
        """Tabulate a ``simulated`` or ``replay`` backend (anything with ``supported``,
        ``true_step_at`` and ``idle_power_w``).

        Raises:
            ConfigError: the backend cannot answer for ``knob``.
        """
        supported = getattr(backend, "supported", None)
        true_step_at = getattr(backend, "true_step_at", None)
        if supported is None or true_step_at is None:
            raise ConfigError(f"GPU backend {backend!r} has no model to simulate with")
        settings = np.array(sorted((float(s) for s in supported(0, knob)), reverse=True))
        steps = [true_step_at(knob, float(s)) for s in settings]
        idle = float(backend.idle_power_w(0))  # type: ignore[attr-defined]
        ref_power = float(settings[0]) if knob is KnobKind.POWER else 700.0
        return cls(
            label,
            knob,
            settings,
            np.array([t for t, _ in steps]),
            np.array([p for _, p in steps]),
            idle,
            eta,
            ref_intensity_g_per_kwh,
            ref_power,
        )

    @classmethod
    def simulated(cls, workload: str = "gpt", *, eta: float = 0.5) -> GpuProfile:
        """The simulated H100 backend's model for ``workload`` (``gpt`` or ``resnet50``)."""
        from caftm.gpu.simulated import SimulatedBackend

        backend = SimulatedBackend(workload, noise_rel=0.0)
        return cls.from_backend(
            backend, KnobKind.CLOCK, label=f"simulated H100, workload {workload}", eta=eta
        )

    # -- look-ups --------------------------------------------------------------------------------
    def index(self, setting: float | None) -> int:
        """Row of ``setting`` (None: the default, row 0; others: the nearest supported)."""
        row = self._rows.get(setting)
        if row is None:
            row = 0 if setting is None else int(np.argmin(np.abs(self.settings - setting)))
            self._rows[setting] = row
        return row

    def time_factor(self, setting: float | None) -> float:
        """Step time at ``setting`` over step time at the default (≥ 1 on a well-behaved GPU)."""
        return float(self.step_time_s[self.index(setting)] / self.step_time_s[0])

    def power_at(self, setting: float | None) -> float:
        """Training power at ``setting``, W per device."""
        return float(self.power_w[self.index(setting)])

    def best_setting(self, intensity_g_per_kwh: float) -> float:
        """The setting of least per-step cost at this intensity (what the optimiser settles on)."""
        key = round(float(intensity_g_per_kwh), 3)
        row = self._best.get(key)
        if row is None:
            weights = CostWeights(
                self.eta,
                min(max(key, 0.0), 2500.0),
                self.ref_intensity_g_per_kwh,
                self.ref_power_w,
            )
            row = int(np.argmin(step_cost_array(self.step_time_s, self.power_w, weights)))
            self._best[key] = row
        return float(self.settings[row])

    def default_only(self) -> GpuProfile:
        """The same GPU held at its default setting (for what-if comparisons)."""
        return GpuProfile(
            f"{self.label}, default setting only",
            self.knob,
            self.settings[:1].copy(),
            self.step_time_s[:1].copy(),
            self.power_w[:1].copy(),
            self.idle_power_w,
            self.eta,
            self.ref_intensity_g_per_kwh,
            self.ref_power_w,
        )

    def curve(self, gpus: int = 1) -> GpuCurve:
        """The planner's view of this GPU for a job on ``gpus`` devices (powers summed)."""
        speed = self.step_time_s[0] / self.step_time_s
        return GpuCurve(
            tuple(float(s) for s in self.settings),
            tuple(float(v) for v in speed),
            tuple(float(p) * gpus for p in self.power_w),
            self.idle_power_w * gpus,
        )

    def energy_per_work(self) -> FloatArray:
        """Energy per second of full-speed work at each setting, J/s (power × time factor)."""
        out: FloatArray = self.power_w * self.step_time_s / self.step_time_s[0]
        return out
