"""EnergyMeter: windows against GPUs whose energy is known in closed form, and the simulated GPU."""

from __future__ import annotations

import math
import sys
import threading
import time
import types
from typing import ClassVar

import pytest

from caftm.errors import ConfigError, DeviceError
from caftm.gpu.base import DeviceInfo, GpuBackend, KnobKind
from caftm.gpu.meter import EnergyMeter
from caftm.gpu.simulated import SimulatedBackend


class AnalyticBackend(GpuBackend):
    """Hardware edge with known answers: GPU i draws ``base_w[i] + swing_w·sin(2πt/period_s)``.

    Time is wall-clock (monotonic); the energy counter is the exact integral of that power.
    """

    name = "analytic"

    def __init__(
        self,
        base_w: tuple[float, ...] = (300.0,),
        swing_w: float = 150.0,
        period_s: float = 1.0,
        has_counter: bool = True,
    ) -> None:
        self.base_w = base_w
        self.swing_w = swing_w
        self.period_s = period_s
        self.has_counter = has_counter
        self.t0 = time.monotonic()
        self.fail_reads = False

    def device_count(self) -> int:
        return len(self.base_w)

    def info(self, index: int) -> DeviceInfo:
        if not 0 <= index < len(self.base_w):
            raise DeviceError(f"unknown GPU index {index}")
        return DeviceInfo(index, "analytic", (1000,), (100.0, 400.0), 400.0, self.has_counter, True)

    def get(self, index: int, knob: KnobKind) -> float | None:
        return None

    def set(self, index: int, knob: KnobKind, value: float) -> None:
        raise AssertionError("the meter never sets anything")

    def reset(self, index: int, knob: KnobKind) -> None:
        raise AssertionError("the meter never resets anything")

    def true_energy_j(self, index: int, t_s: float) -> float:
        """Exact integral of the power from the backend's start to monotonic time ``t_s``."""
        x = t_s - self.t0
        w = 2 * math.pi / self.period_s
        return self.base_w[index] * x + self.swing_w * (1 - math.cos(w * x)) / w

    def energy_j(self, index: int) -> float:
        if self.fail_reads:
            raise DeviceError(f"GPU {index}: reading the energy counter failed: GPU is lost")
        if not self.has_counter:
            raise DeviceError(f"GPU {index} has no energy counter")
        return self.true_energy_j(index, time.monotonic())

    def power_w(self, index: int) -> float:
        x = time.monotonic() - self.t0
        return self.base_w[index] + self.swing_w * math.sin(2 * math.pi * x / self.period_s)


def _true_window_j(backend: AnalyticBackend, index: int, start_s: float, end_s: float) -> float:
    return backend.true_energy_j(index, end_s) - backend.true_energy_j(index, start_s)


@pytest.mark.parametrize(
    ("source", "interval_s", "tolerance"), [("counter", 0.02, 0.01), ("power", 0.005, 0.03)]
)
def test_window_energy_matches_the_exact_integral(
    source: str, interval_s: float, tolerance: float
) -> None:
    backend = AnalyticBackend(has_counter=source == "counter")
    with EnergyMeter(backend, interval_s=interval_s, source="auto", sampling="thread") as meter:
        assert meter.sources == {0: source}
        time.sleep(0.05)
        window = meter.begin("train")
        time.sleep(0.6)
        meter.end("train")
        energy_j = window.wait(timeout_s=5).energy_j
    truth = _true_window_j(backend, 0, window.start_s, window.end_s or 0.0)
    assert window.time_s == pytest.approx(0.6, abs=0.3)
    assert energy_j == pytest.approx(truth, rel=tolerance)


def test_nested_and_overlapping_windows_add_up() -> None:
    backend = AnalyticBackend(base_w=(250.0,), swing_w=0.0)
    with EnergyMeter(backend, interval_s=0.01, sampling="thread") as meter:
        outer = meter.begin("epoch")
        time.sleep(0.05)
        first = meter.begin("a")
        time.sleep(0.05)
        second = meter.begin("b")  # overlaps "a"
        time.sleep(0.05)
        meter.end("a")
        time.sleep(0.05)
        meter.end("b")
        with meter.window("c") as third:
            time.sleep(0.03)
        meter.end("epoch")
    for window in (outer, first, second, third):
        assert window.energy_j == pytest.approx(250.0 * window.time_s, rel=1e-3)
    assert first.time_s + third.time_s < outer.time_s
    assert outer.energy_j > first.energy_j + third.energy_j


def test_multi_gpu_energy_per_gpu_and_total() -> None:
    backend = AnalyticBackend(base_w=(100.0, 300.0, 50.0), swing_w=0.0)
    with EnergyMeter(backend, indices=[2, 0], interval_s=0.01, sampling="thread") as meter:
        assert meter.indices == (0, 2)
        with meter.window("w") as window:
            time.sleep(0.1)
    per_gpu = window.energy_j_per_gpu
    assert set(per_gpu) == {0, 2}
    assert per_gpu[0] == pytest.approx(100.0 * window.time_s, rel=1e-3)
    assert per_gpu[2] == pytest.approx(50.0 * window.time_s, rel=1e-3)
    assert window.energy_j == pytest.approx(150.0 * window.time_s, rel=1e-3)
    assert window.avg_power_w == pytest.approx(150.0, rel=1e-3)


def test_step_path_only_timestamps_energy_resolves_later() -> None:
    backend = AnalyticBackend(base_w=(200.0,), swing_w=0.0)
    with EnergyMeter(backend, interval_s=0.5, sampling="thread") as meter:
        meter.begin("step")
        meter.end("step")
        window = meter.begin("step")  # the same name may be reused once closed
        result = meter.end("step")
        assert result is window
        assert result.time_s >= 0.0
        # The next periodic sample is up to 0.5 s away: reading the energy pokes the thread.
        started = time.monotonic()
        assert result.energy_j == pytest.approx(200.0 * result.time_s, abs=1e-3)
        assert time.monotonic() - started < 0.4


def test_windows_on_the_simulated_gpu_in_virtual_time() -> None:
    backend = SimulatedBackend("resnet50", device_count=2, noise_rel=0.0)
    with EnergyMeter(backend) as meter:
        assert meter.sampling == "edges"
        with meter.window("profile") as window:
            time_s, energy_j = backend.run_steps(0, 40)
        assert repr(window).endswith("SIMULATED)")
    assert window.simulated
    assert window.time_s == pytest.approx(time_s)
    assert window.energy_j_per_gpu[0] == pytest.approx(energy_j)
    assert window.energy_j_per_gpu[1] == pytest.approx(time_s * backend.idle_power_w(1))
    assert energy_j / time_s == pytest.approx(537.0, rel=0.05)  # the probe's ResNet-50 row


def test_cuda_is_synchronised_at_window_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    fake_cuda = types.SimpleNamespace(
        is_available=lambda: True, synchronize=lambda: calls.append("sync")
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=fake_cuda))
    backend = AnalyticBackend(swing_w=0.0)
    with EnergyMeter(backend, interval_s=0.01, sampling="thread") as meter:
        meter.begin("w")
        assert calls == ["sync"]
        meter.end("w")
        assert calls == ["sync", "sync"]
    with (
        EnergyMeter(backend, interval_s=0.01, sync_cuda=False, sampling="thread") as meter,
        meter.window("w"),
    ):
        pass
    assert len(calls) == 2


class _FakeCudaEvent:
    """Stands in for a timing torch.cuda.Event: the "GPU" passes it when the test says so, and
    its GPU-timer reading is the backend's time at that moment."""

    clock = staticmethod(time.monotonic)
    released = threading.Event()
    recorded: ClassVar[list[_FakeCudaEvent]] = []

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing
        self.done_s: float | None = None

    def record(self) -> None:
        self.recorded.append(self)
        self.done_s = None
        if self.released.is_set():
            self.done_s = self.clock()

    def query(self) -> bool:
        if self.done_s is None and self.released.is_set():
            self.done_s = self.clock()
        return self.done_s is not None

    def synchronize(self) -> None:
        assert self.released.wait(5.0)
        self.query()

    def elapsed_time(self, end: _FakeCudaEvent) -> float:
        assert self.done_s is not None and end.done_s is not None
        return (end.done_s - self.done_s) * 1000.0


def test_cuda_event_edges_do_not_block_and_are_timed_when_the_gpu_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    fake_cuda = types.SimpleNamespace(
        is_available=lambda: True, synchronize=lambda: calls.append("sync"), Event=_FakeCudaEvent
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=fake_cuda))
    _FakeCudaEvent.recorded.clear()
    _FakeCudaEvent.released.set()  # the anchor at start completes at once
    backend = AnalyticBackend(swing_w=0.0)
    with EnergyMeter(backend, interval_s=0.01, sampling="thread", cuda_edges="event") as meter:
        _FakeCudaEvent.released.clear()  # now the "GPU" lags behind the CPU
        window = meter.begin("w")
        meter.end("w")  # returns at once although the GPU has reached neither edge
        assert calls == [] and len(_FakeCudaEvent.recorded) == 3  # anchor + two edges
        time.sleep(0.05)
        assert window.start_s is None and window.end_s is None
        released_at = backend.now_s()
        _FakeCudaEvent.released.set()
        assert window.time_s >= 0.0
        assert window.start_s is not None and window.start_s >= released_at - 1e-3
        assert window.energy_j == pytest.approx(window.time_s * backend.power_w(0), abs=1e-3)
    assert calls == []


def test_misuse_is_reported_clearly() -> None:
    backend = AnalyticBackend(has_counter=False)
    with pytest.raises(DeviceError, match="unknown GPU index 3"):
        EnergyMeter(backend, indices=[3])
    with pytest.raises(DeviceError, match="no total-energy counter"):
        EnergyMeter(backend, source="counter")
    with pytest.raises(ConfigError, match="interval_s"):
        EnergyMeter(backend, interval_s=0.0)
    meter = EnergyMeter(backend, interval_s=0.01, sampling="thread")
    with pytest.raises(ConfigError, match="not started"):
        meter.begin("w")
    with meter:
        window = meter.begin("w")
        with pytest.raises(ConfigError, match="still open"):
            _ = window.time_s
        with pytest.raises(ConfigError, match="already open"):
            meter.begin("w")
        with pytest.raises(ConfigError, match="'x' is not open"):
            meter.end("x")
        meter.end("w")


def test_a_failing_counter_surfaces_as_device_error() -> None:
    backend = AnalyticBackend()
    with EnergyMeter(backend, interval_s=0.01, sampling="thread") as meter:
        meter.begin("w")
        backend.fail_reads = True
        window = meter.end("w")
        with pytest.raises(DeviceError, match="GPU is lost"):
            _ = window.energy_j


def test_many_short_windows_keep_memory_bounded() -> None:
    backend = AnalyticBackend(swing_w=0.0)
    with EnergyMeter(backend, interval_s=0.001, sampling="thread") as meter:
        deadline = time.monotonic() + 1.0
        results = []
        while time.monotonic() < deadline:
            meter.begin("step")
            results.append(meter.end("step"))
            time.sleep(0.0005)
        total_j = sum(r.energy_j for r in results)  # every window resolved: nothing pins samples
        time.sleep(0.05)  # a few more sampling rounds, each of which prunes
        samples = len(meter._series[0].times_s)
    assert samples < 650  # ~900 samples taken; old ones pruned
    assert total_j == pytest.approx(300.0 * sum(r.time_s for r in results), rel=1e-3)
