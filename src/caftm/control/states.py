"""Value types of the controller: what it observes, what it asks for, its decision state.

Everything here is immutable plain data, so the pure transition function, the live controller and
the trace-driven simulator share it. Times are POSIX seconds (UTC) unless a name says otherwise;
intensities are gCO2eq/kWh; power is W; energy is J; carbon is g. The states themselves and the
recorded transitions are in :mod:`caftm.records` (shared with the ledger).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime

from caftm.control.planning import GpuCurve
from caftm.records import RunStatus, State


def utc_from_s(time_s: float) -> datetime:
    """POSIX seconds → timezone-aware UTC datetime."""
    return datetime.fromtimestamp(time_s, UTC)


@dataclass(frozen=True, slots=True)
class Band:
    """Suspend/resume thresholds in gCO2eq/kWh: suspend at ``ci >= suspend_at``, count the grid
    clean again only at ``ci <= resume_below`` (hysteresis: ``resume_below <= suspend_at``)."""

    suspend_at: float
    resume_below: float

    @classmethod
    def never(cls) -> Band:
        """A band that never suspends and always counts the grid as clean."""
        return cls(math.inf, math.inf)


@dataclass(frozen=True, slots=True)
class SiteOutlook:
    """What is known about one candidate site: its intensity now and, when available, an hourly
    forecast starting at the current hour (gCO2eq/kWh)."""

    site: str
    intensity_g_per_kwh: float
    forecast_g_per_kwh: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Observation:
    """Everything the transition function may look at, gathered by the controller or simulator.

    Attributes:
        now_s: current time, POSIX s.
        intensity_g_per_kwh: intensity at the current site now.
        band: the suspend/resume thresholds in force (see :mod:`caftm.control.threshold`).
        outlooks: candidate sites, the current one included.
        optimizer_settled: the GPU optimiser has a best setting (Scaling → Tolerance).
        best_setting: that setting (MHz or W); None keeps the device default.
        drift: the GPU model no longer predicts the measured window.
        checkpoint_ok: outcome of the checkpoint asked for in Suspend (None: not yet tried).
        remaining_work_s: estimated training time left at the current speed (None: unknown).
        pace_known: the run's pace has been measured (False before its first window: a job of
            known length then reads as one of unknown length).
        power_w: average training power (W), idle_power_w: power while moving/paused.
        finished: the run is ending (training finished, or the process moves, pauses, fails).
        end_status: why it ends: ``finished``/``completed``, ``moved``, ``paused``, ``failed``.
        preempted: the process was told to stop (SIGTERM/SIGINT): checkpoint before it does.
        gpu_curve: the GPU's speed and power per setting for the whole job (None: unknown; the
            planner then plans with the current power only).
    """

    now_s: float
    intensity_g_per_kwh: float
    band: Band
    outlooks: tuple[SiteOutlook, ...] = ()
    optimizer_settled: bool = False
    best_setting: float | None = None
    drift: bool = False
    checkpoint_ok: bool | None = None
    remaining_work_s: float | None = None
    pace_known: bool = True
    power_w: float = 300.0
    idle_power_w: float = 100.0
    finished: bool = False
    end_status: RunStatus = RunStatus.FINISHED
    preempted: bool = False
    gpu_curve: GpuCurve | None = None

    def outlook(self, site: str) -> SiteOutlook | None:
        """The outlook of ``site``, or None."""
        for outlook in self.outlooks:
            if outlook.site == site:
                return outlook
        return None


@dataclass(frozen=True, slots=True)
class ControlState:
    """The controller's whole decision state (what a checkpoint keeps of it).

    Attributes:
        state: the current state.
        site: where training runs now.
        entered_s: when ``state`` was entered (POSIX s), for the minimum dwell.
        scaling_intensity_g_per_kwh: intensity when the GPU setting was last optimised.
        setting: applied GPU setting (None: device default).
        pause_until_s: end of the planned pause (PAUSED only).
        tolerance_since_s: when Tolerance was last entered (the re-Scaling dwell counts from here).
        resumed_s: when training last resumed after a Suspend cycle (the suspend dwell counts
            from here; −∞ before the first).
    """

    state: State
    site: str
    entered_s: float
    scaling_intensity_g_per_kwh: float = math.nan
    setting: float | None = None
    pause_until_s: float = math.nan
    tolerance_since_s: float = -math.inf
    resumed_s: float = -math.inf

    def to_dict(self) -> dict[str, object]:
        """JSON-able form (for checkpoints)."""
        return {
            "state": self.state.value,
            "site": self.site,
            "entered_s": self.entered_s,
            "scaling_intensity_g_per_kwh": _finite_or_none(self.scaling_intensity_g_per_kwh),
            "setting": self.setting,
            "pause_until_s": _finite_or_none(self.pause_until_s),
            "tolerance_since_s": _finite_or_none(self.tolerance_since_s),
            "resumed_s": _finite_or_none(self.resumed_s),
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ControlState:
        """Inverse of :meth:`to_dict`."""

        def num(key: str, default: float) -> float:
            value = data.get(key)
            return default if value is None else float(value)  # type: ignore[arg-type]

        setting = data.get("setting")
        return cls(
            state=State(str(data["state"])),
            site=str(data["site"]),
            entered_s=num("entered_s", 0.0),
            scaling_intensity_g_per_kwh=num("scaling_intensity_g_per_kwh", math.nan),
            setting=None if setting is None else float(setting),  # type: ignore[arg-type]
            pause_until_s=num("pause_until_s", math.nan),
            tolerance_since_s=num("tolerance_since_s", -math.inf),
            resumed_s=num("resumed_s", -math.inf),
        )


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


# --- actions: plain data the controller (or simulator) executes outside the pure function -----


@dataclass(frozen=True, slots=True)
class ApplySetting:
    """Set the GPU knob to ``setting`` (MHz or W); None restores the device default."""

    setting: float | None


@dataclass(frozen=True, slots=True)
class StartProfiling:
    """Begin (or restart) the GPU optimiser's profiling at the given intensity."""

    intensity_g_per_kwh: float


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Take a complete checkpoint."""


@dataclass(frozen=True, slots=True)
class Preempt:
    """Take a complete checkpoint because the process must stop (SIGTERM/SIGINT). Unlike
    :class:`Checkpoint`, a failure is not absorbed: it propagates, so no stop goes unsaved."""


@dataclass(frozen=True, slots=True)
class Migrate:
    """Move training to ``dest`` (restore the checkpoint there)."""

    dest: str
    net_saving_g: float


@dataclass(frozen=True, slots=True)
class Pause:
    """Wait in place until ``until_s`` (POSIX s) at most, then re-evaluate."""

    until_s: float


@dataclass(frozen=True, slots=True)
class Resume:
    """Carry on training at the current site."""


@dataclass(frozen=True, slots=True)
class Finish:
    """Training ended: restore the GPU defaults and close the run."""


Action = ApplySetting | StartProfiling | Checkpoint | Preempt | Migrate | Pause | Resume | Finish


@dataclass(frozen=True, slots=True)
class Step:
    """Result of one transition: the next state, the actions to run, and why."""

    state: ControlState
    actions: tuple[Action, ...] = field(default_factory=tuple)
    reason: str = ""

    @property
    def changed(self) -> bool:
        """Whether a transition happened (a reason is given for every transition)."""
        return bool(self.reason)
