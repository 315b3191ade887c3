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


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # lightning's pytree use
@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
@pytest.mark.parametrize(("child", "module"), [("lightning_child", "lightning"),
                                               ("hf_child", "transformers")])  # fmt: skip
def test_an_integration_callback_reports_the_step_it_restored_and_how_it_ended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, child: str, module: str
) -> None:
    pytest.importorskip(module)
    import importlib

    run_segment = importlib.import_module(child).run_segment
    status_file, outcome_file = tmp_path / "status.json", tmp_path / "outcome.json"
    monkeypatch.setenv("CAFTM_STATUS_FILE", str(status_file))
    monkeypatch.setenv("CAFTM_OUTCOME_FILE", str(outcome_file))
    store = tmp_path / "store"
    ends = []
    for site in ("site-a", "site-b"):  # moves at 5 (a → b), then at 12 (b → a)
        run_segment(store, site, (5, 12, 23))
        status = json.loads(status_file.read_text())
        outcome = json.loads(outcome_file.read_text())
        ends.append((status["start_step"], status["step"], status["outcome"], outcome["outcome"],
                     outcome["step"], outcome["dest"]))  # fmt: skip
        assert status["notices"] == []
    assert ends == [(0, 5, "moved", "moved", 5, "site-b"),
                    (5, 12, "moved", "moved", 12, "site-a")]  # fmt: skip
