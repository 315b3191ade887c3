"""What the controller needs from the outside: the GPU optimiser, energy windows, side effects.

Protocols rather than imports, so any implementation fits (the real ones are
:class:`caftm.gpu.optimizer.OnlineOptimizer` and :class:`caftm.gpu.meter.EnergyMeter`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from caftm.gpu.base import Measurement
from caftm.gpu.cost import CostWeights
from caftm.records import Event


class GpuOptimizer(Protocol):
    """What the controller needs of :class:`caftm.gpu.optimizer.OnlineOptimizer`."""

    @property
    def settled(self) -> bool: ...

    @property
    def probe_steps(self) -> int: ...

    def next_probe(self) -> float | None: ...

    def observe(self, m: Measurement) -> None: ...

    def best(self) -> float: ...

    def set_weights(self, weights: CostWeights) -> bool: ...

    def check_drift(self, m: Measurement) -> bool: ...


class MeterWindow(Protocol):
    """A measured window (:class:`caftm.gpu.meter.WindowResult`)."""

    @property
    def time_s(self) -> float: ...

    @property
    def energy_j(self) -> float: ...


class WindowMeter(Protocol):
    """Named energy windows (:class:`caftm.gpu.meter.EnergyMeter`)."""

    def begin(self, name: str) -> MeterWindow: ...

    def end(self, name: str) -> MeterWindow: ...


@dataclass
class Hooks:
    """Side effects, supplied by the integration (all optional).

    Attributes:
        apply_setting: set the GPU knob (MHz or W; None = device default).
        checkpoint: take a complete checkpoint; raise to report failure. Without it the state
            is kept only in memory (fine for pausing in place and in-process simulation).
        migrate: move the job to a site (may not return, e.g. the process is replaced).
        pause: block until the given POSIX time (default: sleep on the controller's clock).
        resume: called when training carries on after Suspend/Migration/Pause.
        on_event: called with every recorded event.
    """

    apply_setting: Callable[[float | None], None] | None = None
    checkpoint: Callable[[], object] | None = None
    migrate: Callable[[str], None] | None = None
    pause: Callable[[float], None] | None = None
    resume: Callable[[], None] | None = None
    on_event: Callable[[Event], None] | None = None
