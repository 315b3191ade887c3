"""Fixtures of the controller tests: a fake clock, a fake GPU at the hardware edge, traces."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from tests.conftest import shared_file

from caftm.signals.base import Kind, Reading
from caftm.signals.traces import TraceSource, load_trace

#: 2022-01-01T00:00Z, the start of the real trace.
T0_S = datetime(2022, 1, 1, tzinfo=UTC).timestamp()
HOUR_S = 3600.0
REAL_ZONES = ("DE", "KR", "FR", "JP-TK", "CA-QC", "GB")


class FakeClock:
    """POSIX seconds that move only when told."""

    def __init__(self, start_s: float = T0_S) -> None:
        self.now_s = start_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, dt_s: float) -> None:
        self.now_s += dt_s


@dataclass
class FakeGpu:
    """The hardware edge, faked: a clock-locked GPU whose step time and power follow the
    model of DESIGN.md (T(f) = T_max·(β + (1−β)·f_max/f), P(f) = P_idle + P_dyn·(f/f_max)^γ)."""

    clock: FakeClock
    f_max_mhz: float = 1980.0
    t_max_s: float = 0.2
    beta: float = 0.4
    p_idle_w: float = 90.0
    p_dyn_w: float = 560.0
    gamma: float = 2.5
    setting: float | None = None
    applied: list[float | None] = field(default_factory=list)
    energy_j: float = 0.0

    def apply(self, setting: float | None) -> None:
        self.setting = setting
        self.applied.append(setting)

    def _f(self) -> float:
        return self.f_max_mhz if self.setting is None else self.setting

    def step_time_s(self) -> float:
        return self.t_max_s * (self.beta + (1 - self.beta) * self.f_max_mhz / self._f())

    def power_w(self) -> float:
        return self.p_idle_w + self.p_dyn_w * (self._f() / self.f_max_mhz) ** self.gamma

    def train_step(self) -> None:
        dt = self.step_time_s()
        self.energy_j += self.power_w() * dt
        self.clock.advance(dt)


@dataclass
class _Window:
    start_s: float
    start_j: float
    time_s: float = math.nan
    energy_j: float = math.nan


class FakeMeter:
    """Energy windows over the fake GPU (the EnergyMeter protocol)."""

    def __init__(self, gpu: FakeGpu) -> None:
        self.gpu = gpu
        self.open: dict[str, _Window] = {}
        self.closed = 0

    def begin(self, name: str) -> _Window:
        assert name not in self.open, f"window {name} already open"
        window = _Window(self.gpu.clock(), self.gpu.energy_j)
        self.open[name] = window
        return window

    def end(self, name: str) -> _Window:
        window = self.open.pop(name)
        window.time_s = self.gpu.clock() - window.start_s
        window.energy_j = self.gpu.energy_j - window.start_j
        self.closed += 1
        return window


def synthetic_source(
    series: dict[str, Sequence[float]], *, start_s: float = T0_S, step_s: int = 3600
) -> TraceSource:
    """A trace source over hand-made series (kind SYNTHETIC, label says so)."""
    zones = list(series)
    values = np.array([list(series[z]) for z in zones], dtype=float)
    return TraceSource(
        zones,
        datetime.fromtimestamp(start_s, UTC),
        step_s,
        values,
        kind=Kind.SYNTHETIC,
        label="synthetic test series",
    )


class OracleTraceSource(TraceSource):
    """A trace whose "forecast" is the trace's own future (a perfect forecast, kind FORECAST).

    Used to test forecast-driven decisions without a forecasting model's error or cost.
    """

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> list[Reading]:
        assert start is not None
        row = self.zone_index(zone)
        first = int((start.timestamp() - self.start_s) // self.step_s)
        count = int(horizon.total_seconds() // self.step_s)
        values = self.values[row, first : first + count]
        return [
            Reading(
                zone,
                self._time_at(first + i),
                float(v),
                self.basis,
                Kind.FORECAST,
                f"{self.label} (oracle forecast)",
            )
            for i, v in enumerate(values)
        ]


def oracle(trace: TraceSource) -> OracleTraceSource:
    """The same trace with a perfect forecast."""
    return OracleTraceSource(
        trace.zones(),
        trace.start,
        trace.step_s,
        trace.values,
        basis=trace.basis,
        kind=trace.kind,
        label=trace.label,
    )


@pytest.fixture(scope="session")
def real_trace() -> TraceSource:
    """Hourly 2022 lifecycle intensity of a few zones (Electricity Maps data, ODbL)."""
    path = shared_file("carbon/ci_2022_hourly_lca_123zones.csv")
    return load_trace(path, zones=list(REAL_ZONES))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
