"""The simulated H100: calibration against the probe file, virtual time, persistence, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import shared_file

from caftm.errors import ConfigError, DeviceError
from caftm.gpu.base import KnobKind
from caftm.gpu.simulated import H100_CLOCKS_MHZ, SimulatedBackend

CLOCK, POWER = KnobKind.CLOCK, KnobKind.POWER


@pytest.mark.parametrize(
    ("workload", "row"), [("resnet50", "resnet50_bs128"), ("gpt", "gpt_d1024_L8_bs32")]
)
def test_default_setting_matches_the_h100_probe(workload: str, row: str) -> None:
    probe = json.loads(shared_file("gpu/h100_probe_2026-11-26.json").read_text())
    measured = probe["workloads"][row]
    assert len(H100_CLOCKS_MHZ) == probe["graphics_clocks_n"] == 110
    assert list(H100_CLOCKS_MHZ) == probe["graphics_clocks"]
    backend = SimulatedBackend(workload, noise_rel=0.0)
    time_s, energy_j = backend.run_steps(0, 100)
    assert time_s / 100 == pytest.approx(measured["s_per_step"], rel=0.03)
    assert energy_j / time_s == pytest.approx(measured["avg_W"], rel=0.03)


def test_energy_optimal_clock_is_interior() -> None:
    backend = SimulatedBackend("resnet50", noise_rel=0.0)
    energy = [np.prod(backend.true_step_at(CLOCK, c)) for c in H100_CLOCKS_MHZ]
    best = H100_CLOCKS_MHZ[int(np.argmin(energy))]
    assert 0.55 <= best / 1980 <= 0.75


def test_virtual_time_and_energy_counter_advance_only_with_steps() -> None:
    backend = SimulatedBackend(noise_rel=0.0, device_count=2)
    assert backend.now_s() == 0.0
    backend.set(0, CLOCK, 1200)
    time_s, energy_j = backend.run_steps(0, 10)
    assert backend.now_s() == pytest.approx(time_s)
    assert backend.energy_j(0) == pytest.approx(energy_j)
    assert backend.energy_j(1) > 0  # the other GPU idles meanwhile
    t_fast, _ = backend.true_step_at(CLOCK, 1980)
    assert time_s / 10 > t_fast  # a lower clock is slower


def test_noise_is_seeded_and_relative() -> None:
    a = [SimulatedBackend(noise_rel=0.02, seed=7).measure(1500, 20) for _ in range(2)]
    assert a[0] == a[1]
    ms = [SimulatedBackend(noise_rel=0.02, seed=s).measure(1500, 20) for s in range(40)]
    t_true, _ = SimulatedBackend(noise_rel=0.0).true_step_at(CLOCK, 1500)
    rel = np.array([m.step_time_s / t_true - 1 for m in ms])
    assert 0.005 < rel.std() < 0.04


def test_power_limit_lowers_the_clock_until_power_fits() -> None:
    backend = SimulatedBackend("gpt", noise_rel=0.0)
    t_free, p_free = backend.true_step_at(POWER, 700)
    t_cap, p_cap = backend.true_step_at(POWER, 400)
    assert p_free == pytest.approx(644.0) and p_cap <= 400.0 + 1e-9
    assert t_cap > t_free


def test_unsupported_settings_and_indices_are_refused() -> None:
    backend = SimulatedBackend()
    with pytest.raises(DeviceError, match=r"1234 MHz.*345–1980 MHz"):
        backend.set(0, CLOCK, 1234)
    with pytest.raises(DeviceError, match="power limit 800"):
        backend.set(0, POWER, 800)
    with pytest.raises(DeviceError, match="unknown GPU index 3"):
        backend.info(3)
    with pytest.raises(ConfigError, match="unknown simulated workload"):
        SimulatedBackend("bert")


def test_info_says_simulated() -> None:
    info = SimulatedBackend().info(0)
    assert info.simulated and info.backend == "simulated"
    assert "simulated" in info.name and any("simulated" in n for n in info.notes)


def test_settings_persist_across_instances(tmp_path: Path) -> None:
    state = tmp_path / "gpu.json"
    first = SimulatedBackend(state_path=state)
    first.set(0, CLOCK, 1200)
    first.set(0, POWER, 450)
    second = SimulatedBackend(state_path=state)
    assert second.get(0, CLOCK) == 1200 and second.get(0, POWER) == 450
    second.reset(0, CLOCK)
    assert SimulatedBackend(state_path=state).get(0, CLOCK) is None
    assert not list(tmp_path.glob(".gpu.json.*"))  # no temp file left behind


def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "gpu.json"
    state.write_text("{not json")
    with pytest.raises(DeviceError, match="unreadable"):
        SimulatedBackend(state_path=state)


def test_absurd_step_counts_and_seeds_are_config_errors() -> None:
    backend = SimulatedBackend()
    with pytest.raises(ConfigError, match="steps must be in"):
        backend.run_steps(0, 10**400)
    assert backend.now_s() == 0.0
    with pytest.raises(ConfigError, match="seed"):
        SimulatedBackend(seed=-1)
    with pytest.raises(ConfigError, match="seed"):
        backend.reseed(-3)
    backend.reseed(np.int64(5))  # numpy integers are fine


def test_unwritable_state_file_is_a_device_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    backend = SimulatedBackend(state_path=blocker / "gpu.json")
    with pytest.raises(DeviceError, match="cannot write simulated GPU state file"):
        backend.set(0, CLOCK, 1200)
