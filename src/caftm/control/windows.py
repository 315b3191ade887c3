"""The run's measured windows: Tolerance windows (energy read one boundary later, so a step never
waits for the meter) and probe windows, each written to the ledger with its intensity and carbon."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from caftm._units import carbon_g
from caftm.control.hooks import MeterWindow, WindowMeter
from caftm.control.states import utc_from_s
from caftm.errors import LedgerError
from caftm.gpu.base import KnobKind

if TYPE_CHECKING:
    from caftm.ledger.spool import MeasurementWriter

log = logging.getLogger(__name__)

_WINDOW = "caftm-window"


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    """A finished window: ``energy_j`` is None without a meter. Times in s, energy in J;
    ``time_s`` as the meter measured it, ``clock_s`` on the controller's clock (the two differ
    under an accelerated job clock, where the job's pace is what plans must use)."""

    steps: int
    time_s: float
    energy_j: float | None
    setting: float | None
    site: str
    clock_s: float = 0.0


@dataclass(frozen=True, slots=True)
class _Pending:
    window: MeterWindow | None
    steps: int
    start_s: float
    end_s: float
    intensity_g_per_kwh: float
    setting: float | None
    site: str


class WindowLog:
    """Opens and closes Tolerance windows and records every window in the ledger.

    Args:
        meter: energy windows (None: windows record time and steps only).
        knob: the GPU knob, recorded with each window.
        ledger: where windows are written (None: nowhere); ``run_id`` is set once the run opens.
    """

    def __init__(
        self, meter: WindowMeter | None, knob: KnobKind, ledger: MeasurementWriter | None
    ) -> None:
        self.meter = meter
        self.knob = knob
        self.ledger = ledger
        self.run_id: str | None = None
        self._open: tuple[int, float, float] | None = None  # start step, time, intensity
        self._pending: _Pending | None = None
        #: ledger records lost to a failing ledger (disk full, locked) while training went on
        self.unrecorded = 0
        # the run's totals over every recorded window (J, g, steps)
        self.energy_j_total = 0.0
        self.carbon_g_total = 0.0
        self.steps_total = 0

    @property
    def open_since_step(self) -> int | None:
        """The step the open Tolerance window began at (None: none open)."""
        return None if self._open is None else self._open[0]

    def begin(self, step: int, now_s: float, intensity_g_per_kwh: float) -> None:
        """Open a Tolerance window."""
        if self.meter is not None:
            self.meter.begin(_WINDOW)
        self._open = (step, now_s, intensity_g_per_kwh)

    def end(
        self, step: int, now_s: float, intensity_g_per_kwh: float, setting: float | None, site: str
    ) -> ClosedWindow | None:
        """Close the open window (its energy is read at the next boundary) and return the
        previous one, now resolved and recorded (None if there was none)."""
        opened, self._open = self._open, None
        if opened is None:
            return None
        window = self.meter.end(_WINDOW) if self.meter is not None else None
        start_step, start_s, start_ci = opened
        resolved = self.flush()
        mean_ci = 0.5 * (start_ci + intensity_g_per_kwh)
        self._pending = _Pending(window, step - start_step, start_s, now_s, mean_ci, setting, site)
        return resolved

    def flush(self) -> ClosedWindow | None:
        """Resolve and record the pending window, if any."""
        p, self._pending = self._pending, None
        if p is None or p.steps <= 0:
            return None
        if p.window is None:
            time_s, energy_j = p.end_s - p.start_s, None
        else:
            time_s, energy_j = p.window.time_s, p.window.energy_j
        self.record(
            p.end_s,
            time_s,
            p.steps,
            p.setting,
            energy_j,
            p.intensity_g_per_kwh,
            "tolerance",
            p.site,
        )
        return ClosedWindow(p.steps, time_s, energy_j, p.setting, p.site, p.end_s - p.start_s)

    def record(
        self,
        end_s: float,
        time_s: float,
        steps: int,
        setting: float | None,
        energy_j: float | None,
        intensity_g_per_kwh: float,
        phase: str,
        site: str,
    ) -> None:
        """Write one window to the ledger (see :meth:`write`) and add it to the run's totals."""
        self.steps_total += steps
        if energy_j is not None and math.isfinite(energy_j):
            self.energy_j_total += energy_j
            if math.isfinite(intensity_g_per_kwh):
                self.carbon_g_total += carbon_g(energy_j, intensity_g_per_kwh)
        self.write(
            "window",
            lambda ledger, run_id: ledger.record_window(
                run_id,
                time=utc_from_s(end_s),
                duration_s=time_s,
                steps=steps,
                setting=setting,
                knob=self.knob.value,
                energy_j=energy_j,
                intensity_g_per_kwh=intensity_g_per_kwh,
                site=site,
                phase=phase,
            ),
        )

    def write(self, what: str, action: Callable[[MeasurementWriter, str], None]) -> None:
        """Run one ledger write for the open run. A failing ledger never stops the training: the
        record is counted in :attr:`unrecorded` and logged (once per failing spell)."""
        if self.ledger is None or self.run_id is None:
            return
        try:
            action(self.ledger, self.run_id)
        except LedgerError as e:
            if not self.unrecorded:
                log.warning("%s not recorded, training goes on: %s", what, e)
            self.unrecorded += 1
