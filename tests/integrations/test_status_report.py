"""A worker under a supervisor reports its fate lines and the step it restored in its live
status (``$CAFTM_STATUS_FILE``), which the supervisor prints and records (issue 18)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import integ_scenario as sc
import pytest
import torch

from caftm.gpu.base import DeviceInfo
from caftm.gpu.simulated import SimulatedBackend
from caftm.integrations.torch import CarbonAwareTraining


class NoPermission(SimulatedBackend):
    def info(self, index: int) -> DeviceInfo:
        return dataclasses.replace(super().info(index), can_set=False)


def test_the_gpu_control_fallback_and_the_step_restored_are_in_the_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status_file = tmp_path / "status.json"
    monkeypatch.setenv("CAFTM_STATUS_FILE", str(status_file))
    config = sc.make_config(tmp_path / "store")
    controller, _ = sc.make_controller(config, sc.make_trace(), sc.VirtualClock())
    with CarbonAwareTraining(
        config, model=torch.nn.Linear(2, 1), controller=controller, gpu=NoPermission(),
        refresher_thread=False, knob_state_dir=tmp_path / "knob",
    ) as caftm:  # fmt: skip
        caftm.step()
        caftm.step()
    status = json.loads(status_file.read_text())
    [line] = status["notices"]
    assert "may not change GPU settings" in line and "gpu.control: off" in line
    assert (status["start_step"], status["step"]) == (0, 2)
