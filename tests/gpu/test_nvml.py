"""The nvml backend.

Tests marked ``gpu`` run on a real NVIDIA GPU (read-only: nothing there changes a setting) and
skip without one. The others replace ``pynvml`` itself, the hardware edge, with a small fake that
speaks NVML's units (mW, mJ) and error codes, to check conversion and error translation anywhere.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from caftm.errors import DeviceError, PermissionDeniedError
from caftm.gpu.base import KnobKind
from caftm.gpu.knob import knob_session, recover_stale
from caftm.gpu.meter import EnergyMeter
from caftm.gpu.nvml import PERMISSION_MESSAGE, NvmlBackend, _visible_selectors


def test_cuda_visible_devices_parsing() -> None:
    assert _visible_selectors(None) is None
    assert _visible_selectors("") == []
    assert _visible_selectors("2,0") == ["2", "0"]
    assert _visible_selectors("1, GPU-abc ,x,3") == [
        "1",
        "GPU-abc",
    ]  # CUDA stops at the first bad one
    assert _visible_selectors("MIG-1234") is None


@pytest.fixture
def nvml() -> NvmlBackend:
    try:
        backend = NvmlBackend()
    except DeviceError as e:
        pytest.skip(f"no NVIDIA GPU here: {e}")
    if backend.device_count() == 0:
        backend.close()
        pytest.skip("NVML sees no GPU")
    return backend


@pytest.mark.gpu
def test_info_reads_the_device(nvml: NvmlBackend) -> None:
    with nvml:
        info = nvml.info(0)
        assert info.backend == "nvml" and not info.simulated
        assert info.clocks_mhz == tuple(sorted(info.clocks_mhz, reverse=True))
        lo, hi = info.power_limits_w
        assert 0 < lo <= info.default_power_limit_w <= hi < 2000  # W, not mW
        assert lo <= (nvml.get(0, KnobKind.POWER) or 0) <= hi
        assert 0 < nvml.power_w(0) < 2000
        assert nvml.get(0, KnobKind.CLOCK) is None  # this process locked nothing
        assert len(nvml.uuid(0)) > 8


@pytest.mark.gpu
def test_unknown_index_names_the_range(nvml: NvmlBackend) -> None:
    with (
        nvml,
        pytest.raises(
            DeviceError, match=f"unknown GPU index 99: this process sees {nvml.device_count()}"
        ),
    ):
        nvml.info(99)


@pytest.mark.gpu
def test_visible_devices_renumber(nvml: NvmlBackend) -> None:
    with nvml:
        uuid_last = nvml.uuid(nvml.device_count() - 1)
        with NvmlBackend(visible_devices=str(nvml.device_count() - 1)) as only_last:
            assert only_last.device_count() == 1
            assert only_last.uuid(0) == uuid_last


@pytest.mark.gpu
def test_meter_on_the_real_counter(nvml: NvmlBackend) -> None:
    with nvml:
        meter = EnergyMeter(nvml, [0], interval_s=0.02, sync_cuda=False)
        with meter, meter.window("idle") as window:
            time.sleep(0.5)
        assert 0.4 < window.time_s < 1.5
        # Idle or busy, a GPU draws between ~20 W and its limit.
        assert (
            10.0 * window.time_s < window.energy_j < nvml.info(0).power_limits_w[1] * window.time_s
        )


class FakeNvmlError(Exception):
    def __init__(self, value: int) -> None:
        super().__init__(value)
        self.value = value


def fake_pynvml(devices: list[dict[str, Any]], *, permitted: bool = True) -> types.ModuleType:
    """A pynvml stand-in: ``devices`` hold NVML-unit state (mW, mJ); handles are the dicts."""
    nv = types.ModuleType("pynvml")
    nv.NVMLError = FakeNvmlError  # type: ignore[attr-defined]
    consts = {
        "NVML_ERROR_NOT_SUPPORTED": 3,
        "NVML_ERROR_NO_PERMISSION": 4,
        "NVML_ERROR_FUNCTION_NOT_FOUND": 13,
        "NVML_DEVICE_MIG_ENABLE": 1,
        "NVML_CLOCK_SM": 1,
    }
    for name, value in consts.items():
        setattr(nv, name, value)
    nv.calls = []  # type: ignore[attr-defined]

    def setter(fn):  # type: ignore[no-untyped-def]
        def run(handle, *args):  # type: ignore[no-untyped-def]
            if not permitted:
                raise FakeNvmlError(4)
            nv.calls.append((fn.__name__, handle["uuid"], *args))  # type: ignore[attr-defined]
            fn(handle, *args)

        return run

    def energy(handle):  # type: ignore[no-untyped-def]
        if handle["energy_mj"] is None:
            raise FakeNvmlError(3)
        return handle["energy_mj"]

    def by_uuid(uuid):  # type: ignore[no-untyped-def]
        for device in devices:
            if device["uuid"] == uuid:
                return device
        raise FakeNvmlError(6)

    def lock(handle, lo, hi):  # type: ignore[no-untyped-def]
        handle["locked"] = (lo, hi)

    def unlock(handle):  # type: ignore[no-untyped-def]
        handle["locked"] = None

    def set_limit(handle, mw):  # type: ignore[no-untyped-def]
        handle["limit_mw"] = mw

    functions = {
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlDeviceGetCount": lambda: len(devices),
        "nvmlDeviceGetHandleByIndex": lambda i: devices[i],
        "nvmlDeviceGetHandleByUUID": by_uuid,
        "nvmlDeviceGetName": lambda h: h["name"].encode(),
        "nvmlDeviceGetUUID": lambda h: h["uuid"],
        "nvmlDeviceGetSupportedMemoryClocks": lambda h: [2619, 1593],
        "nvmlDeviceGetSupportedGraphicsClocks": lambda h, mem: (
            list(range(1980, 344, -15)) if mem == 2619 else [1000]
        ),
        "nvmlDeviceGetPowerManagementLimitConstraints": lambda h: [200000, 700000],
        "nvmlDeviceGetPowerManagementDefaultLimit": lambda h: 700000,
        "nvmlDeviceGetPowerManagementLimit": lambda h: h["limit_mw"],
        "nvmlDeviceGetTotalEnergyConsumption": energy,
        "nvmlDeviceGetPowerUsage": lambda h: 537250,
        "nvmlDeviceGetClockInfo": lambda h, kind: 1980,
        "nvmlDeviceGetMigMode": lambda h: [h["mig"], h["mig"]],
        "nvmlDeviceSetGpuLockedClocks": setter(lock),
        "nvmlDeviceResetGpuLockedClocks": setter(unlock),
        "nvmlDeviceSetPowerManagementLimit": setter(set_limit),
    }
    for name, fn in functions.items():
        setattr(nv, name, fn)
    return nv


def _devices() -> list[dict[str, Any]]:
    return [
        {
            "uuid": f"GPU-{i}",
            "name": f"H100 #{i}",
            "limit_mw": 700000,
            "energy_mj": 2231308,
            "mig": 0,
            "locked": None,
        }
        for i in range(3)
    ]


def test_units_are_converted_at_the_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    devices = _devices()
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(devices))
    with NvmlBackend(visible_devices="") as none_visible:
        assert none_visible.device_count() == 0
    with NvmlBackend(visible_devices=None) as backend:
        info = backend.info(0)
        assert info.name == "H100 #0"
        assert info.clocks_mhz[0] == 1980 and len(info.clocks_mhz) == 110
        assert info.power_limits_w == (200.0, 700.0) and info.default_power_limit_w == 700.0
        assert info.has_energy_counter
        assert backend.energy_j(0) == pytest.approx(2231.308)
        assert backend.power_w(0) == pytest.approx(537.25)
        assert backend.get(0, KnobKind.POWER) == 700.0
        backend.set(0, KnobKind.POWER, 412.5)
        assert devices[0]["limit_mw"] == 412500
        backend.set(0, KnobKind.CLOCK, 1410)
        assert devices[0]["locked"] == (1410, 1410)
        assert backend.get(0, KnobKind.CLOCK) == 1410.0
        backend.reset(0, KnobKind.CLOCK)
        backend.reset(0, KnobKind.POWER)
        assert devices[0]["locked"] is None and devices[0]["limit_mw"] == 700000
        assert backend.get(0, KnobKind.CLOCK) is None


def test_cuda_visible_devices_renumber_the_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(_devices()))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,GPU-0,7,1")
    with NvmlBackend() as backend:
        assert backend.device_count() == 2  # CUDA ignores everything from the invalid 7 on
        assert [backend.uuid(i) for i in range(2)] == ["GPU-2", "GPU-0"]
        with pytest.raises(DeviceError, match="unknown GPU index 2: this process sees 2 GPU"):
            backend.info(2)


def test_missing_counter_and_mig_are_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    devices = _devices()
    devices[1]["energy_mj"] = None
    devices[2]["mig"] = 1
    nv = fake_pynvml(devices)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    with NvmlBackend() as backend:
        assert not backend.info(1).has_energy_counter
        meter = EnergyMeter(backend, [0, 1], sync_cuda=False)
        assert meter.sources == {0: "counter", 1: "power"}
        info = backend.info(2)
        assert info.mig_enabled and not info.can_set
        with pytest.raises(DeviceError, match="GPU 2 is in MIG mode"):
            backend.set(2, KnobKind.POWER, 300.0)
        with (
            pytest.raises(DeviceError, match="GPU 2 is in MIG mode"),
            knob_session(backend, [2], KnobKind.CLOCK),
        ):
            pass
    assert nv.calls == []  # type: ignore[attr-defined]


def test_nvml_permission_error_becomes_the_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(_devices(), permitted=False))
    with NvmlBackend() as backend:
        with pytest.raises(PermissionDeniedError) as caught:
            backend.set(1, KnobKind.CLOCK, 1410)
        message = str(caught.value)
        assert message.startswith("GPU 1: locking the SM clock at 1410 MHz: ")
        assert message.endswith(PERMISSION_MESSAGE)
        assert isinstance(caught.value.__cause__, FakeNvmlError)
        assert backend.get(1, KnobKind.CLOCK) is None  # nothing recorded as locked


def test_nvml_that_cannot_start_is_a_device_error(monkeypatch: pytest.MonkeyPatch) -> None:
    nv = fake_pynvml([])

    def broken() -> None:
        raise FakeNvmlError(12)

    nv.nvmlInit = broken  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    with pytest.raises(DeviceError, match="NVML could not be initialised"):
        NvmlBackend()


def test_stale_lock_is_restored_on_the_same_physical_gpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    devices = _devices()
    devices[2]["locked"] = (1410, 1410)  # left by a run that saw only GPU 2, as its index 0
    nv = fake_pynvml(devices)
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    finished = subprocess.Popen(["true"])
    finished.wait()
    state = {
        "version": 1, "host": socket.gethostname(), "pid": finished.pid, "pid_start": None,
        "backend": "nvml", "kind": "clock",
        "originals": [{"index": 0, "device_key": "GPU-2", "value": None}],
    }  # fmt: skip
    (tmp_path / "knob-nvml-clock-1-abc.json").write_text(json.dumps(state))
    with NvmlBackend(visible_devices="0,1") as without_gpu2:
        assert recover_stale(without_gpu2, tmp_path) == 0  # not visible here: kept for later
    assert devices[2]["locked"] == (1410, 1410)
    with NvmlBackend() as backend:
        assert recover_stale(backend, tmp_path) == 1
    assert devices[2]["locked"] is None
    assert nv.calls == [("unlock", "GPU-2")]  # type: ignore[attr-defined]
    assert list(tmp_path.glob("knob-*.json")) == []
