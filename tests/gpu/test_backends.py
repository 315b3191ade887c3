"""The backend registry: names, install hints, auto-detection and the fallback to SIMULATED."""

from __future__ import annotations

import logging

import pytest
from tests.conftest import shared_file

import caftm.gpu
from caftm.errors import ConfigError
from caftm.gpu import backends
from caftm.gpu.backends import available_backends, get_backend, register_backend
from caftm.gpu.base import GpuBackend, KnobKind
from caftm.gpu.simulated import SimulatedBackend


def _nvml_works() -> bool:
    try:
        backend = get_backend("nvml")
    except Exception:
        return False
    return backend.device_count() > 0


def test_registry_names() -> None:
    assert available_backends() == ["nvml", "replay", "simulated"]


def test_simulated_by_name_says_so() -> None:
    backend = get_backend("simulated", workload="gpt", device_count=2)
    assert isinstance(backend, SimulatedBackend)
    assert backend.simulated and backend.device_count() == 2
    info = backend.info(1)
    assert info.simulated and any("simulated" in note for note in info.notes)


def test_replay_by_name() -> None:
    shared_file("gpu/zeus_power_limit_traces/power_v100.csv")
    backend = get_backend("replay")
    assert backend.simulated
    assert backend.supported(0, KnobKind.POWER)


def test_unknown_backend_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"unknown GPU backend 'cuda'.*nvml, replay, simulated"):
        get_backend("cuda")


def test_import_failure_gives_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        backends._REGISTRY, "ghost", ("caftm_ghost_pkg:Ghost", "pip install 'caftm[ghost]'")
    )
    with pytest.raises(ConfigError, match=r"could not be imported .*pip install 'caftm\[ghost\]'"):
        get_backend("ghost")


def test_register_rejects_bad_targets_and_non_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="module:Class"):
        register_backend("bad", "no_colon_here")
    monkeypatch.setitem(backends._REGISTRY, "notabackend", ("caftm.errors:ConfigError", ""))
    with pytest.raises(ConfigError, match="is not a GpuBackend"):
        get_backend("notabackend")


def test_auto_falls_back_to_simulated_and_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if _nvml_works():
        pytest.skip("a real GPU is present: auto picks nvml (see test_nvml.py)")
    caplog.set_level(logging.WARNING, logger="caftm.gpu.backends")
    backend = get_backend("auto", workload="resnet50", device_count=1)
    assert isinstance(backend, SimulatedBackend)
    assert "using the SIMULATED backend" in caplog.text


def test_auto_skips_an_nvml_that_sees_no_gpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class NoGpus(SimulatedBackend):
        name = "nvml"
        closed = False

        def device_count(self) -> int:
            return 0

        def close(self) -> None:
            NoGpus.closed = True

    monkeypatch.setattr(
        backends._REGISTRY, "load", lambda name: NoGpus if name == "nvml" else SimulatedBackend
    )
    caplog.set_level(logging.WARNING, logger="caftm.gpu.backends")
    backend = get_backend("auto")
    assert type(backend) is SimulatedBackend
    assert NoGpus.closed
    assert "NVML sees no GPU" in caplog.text


def test_public_api_is_pinned() -> None:
    assert caftm.gpu.__all__ == [
        "CostWeights", "DeviceInfo", "EnergyMeter", "ExhaustiveResult", "GpuBackend", "GpuKnob",
        "KnobKind", "Measurement", "ModelParams", "OnlineOptimizer", "ReplayBackend",
        "SimulatedBackend", "VirtualGpuBackend", "WindowResult", "available_backends",
        "default_state_dir", "exhaustive_search", "fit_model", "get_backend", "knob_session",
        "recover_stale", "register_backend", "step_cost", "sweep",
    ]  # fmt: skip
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = caftm.gpu.nope
    # each public name is the package's own object, from the module that defines it
    homes = {name: getattr(caftm.gpu, name).__module__ for name in caftm.gpu.__all__}
    assert {name for name, home in homes.items() if not home.startswith("caftm.gpu.")} == set()
    assert homes["OnlineOptimizer"] == "caftm.gpu.optimizer"
    assert homes["SimulatedBackend"] == homes["VirtualGpuBackend"] == "caftm.gpu.simulated"
    assert homes["GpuKnob"] == homes["knob_session"] == "caftm.gpu.knob"
    assert caftm.gpu.GpuBackend is GpuBackend
