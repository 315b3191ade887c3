"""The Scaling state's probe windows, between the controller and the GPU optimiser.

While profiling, each probe applies the optimiser's next setting, measures a window of the steps
the optimiser asks for (:attr:`caftm.gpu.optimizer.OnlineOptimizer.probe_steps`: short sweep
windows when screening) and feeds it back, until the optimiser settles on its best setting.
"""

from __future__ import annotations

from collections.abc import Callable

from caftm.control.hooks import GpuOptimizer, WindowMeter
from caftm.gpu.base import KnobKind, Measurement

__all__ = ["Profiler"]

PROBE_WINDOW = "caftm-probe"


class Profiler:
    """Runs the optimiser's probe windows on the training's own steps.

    Args:
        optimizer: the GPU optimiser (None: nothing to profile, always settled).
        meter: energy windows (None: probes cannot be measured and teach nothing).
        knob: which GPU setting the probes change.
        steps_per_probe: window length when the optimiser does not say.
        apply_setting: applies a setting to the GPU (and the controller's state).
        on_window: receives each measured probe window and the time it ended.
    """

    def __init__(
        self,
        optimizer: GpuOptimizer | None,
        meter: WindowMeter | None,
        knob: KnobKind,
        steps_per_probe: int,
        apply_setting: Callable[[float], None],
        on_window: Callable[[Measurement, float], None],
    ) -> None:
        self.optimizer = optimizer
        self.meter = meter
        self.knob = knob
        self.steps_per_probe = steps_per_probe
        self._apply_setting = apply_setting
        self._on_window = on_window
        self.settled = optimizer is None
        self.best_setting: float | None = None
        #: the setting being probed now (None when not probing)
        self.probing: float | None = None
        self._start_step = 0
        self._length = steps_per_probe
        #: when the current probe opened, on the controller's clock (None: not known)
        self._opened_at: float | None = None
        #: the last closed probe's length on the controller's clock (0 when not known)
        self.last_clock_s = 0.0

    @property
    def ends_at_step(self) -> int:
        """Step count at which the current probe window is complete."""
        return self._start_step + self._length

    def restart(self, steps: int, now: float | None = None) -> None:
        """Drop any open probe and start profiling again (after a move or a re-weighting)."""
        self.abandon()
        self.settled = self.optimizer is None
        if not self.settled:
            self._next(steps, now)

    def advance(self, steps: int, now: float) -> None:
        """Close the current probe once it has its steps, and open the next one (or settle)."""
        if self.probing is None or steps < self.ends_at_step:
            return
        self._close(steps, now)
        self._next(steps, now)

    def abandon(self) -> None:
        """Close the current probe without using it (the state is leaving Scaling)."""
        if self.probing is None:
            return
        self.probing = None
        if self.meter is not None:
            self.meter.end(PROBE_WINDOW)

    def _next(self, steps: int, now: float | None) -> None:
        optimizer = self.optimizer
        assert optimizer is not None
        probe = None if optimizer.settled else optimizer.next_probe()
        if probe is None:
            self.settled = True
            self.best_setting = optimizer.best()
            self.probing = None
            return
        self._apply_setting(probe)
        self.probing = probe
        self._start_step = steps
        self._opened_at = now
        self._length = max(1, int(getattr(optimizer, "probe_steps", self.steps_per_probe)))
        if self.meter is not None:
            self.meter.begin(PROBE_WINDOW)

    def _close(self, steps: int, now: float) -> None:
        setting = self.probing
        assert setting is not None
        self.probing = None
        window = self.meter.end(PROBE_WINDOW) if self.meter is not None else None
        n = steps - self._start_step
        if window is None or n <= 0 or self.optimizer is None:
            return
        m = Measurement(self.knob, setting, n, window.time_s, window.energy_j)
        self.last_clock_s = now - self._opened_at if self._opened_at is not None else 0.0
        self.optimizer.observe(m)
        self._on_window(m, now)
