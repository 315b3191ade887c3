"""Resuming hashes the newest checkpoint once (DDP, Lightning); one home for the knob logic."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import integ_scenario as sc
import pytest
import torch
import torch.distributed as dist

from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.gpu.knob import GpuKnob
from caftm.gpu.simulated import SimulatedBackend
from caftm.integrations import ControllerSession
from caftm.integrations._gpu import GpuSetup
from caftm.integrations.ddp import DistributedSteps


@pytest.fixture
def hash_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts calls of the checkpoint checksum, wherever a stored file is verified (a spy)."""
    import caftm.checkpoint._backend as backend_module
    import caftm.checkpoint.manifest as manifest_module
    from caftm.checkpoint.checksum import tree_sha256

    calls: list[int] = []

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return tree_sha256(*args, **kwargs)

    monkeypatch.setattr(backend_module, "tree_sha256", counting)
    monkeypatch.setattr(manifest_module, "tree_sha256", counting)
    return calls


def _state(value: float) -> TrainingState:
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(value)
    return TrainingState(model=model, extra={"value": value}, rng=False)


# -- DDP ---------------------------------------------------------------------------------------
@pytest.fixture
def process_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A real one-process gloo group: the all-reduce of the resume runs for real."""
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.usefixtures("process_group")
def test_ddp_resume_hashes_the_newest_checkpoint_once(
    tmp_path: Path, hash_calls: list[int]
) -> None:
    own = CheckpointStore(tmp_path / "rank-00001")
    shared = CheckpointStore(tmp_path / "rank-00000")
    for step in (2, 5):
        own.save(_state(float(step)), step=step)
        shared.save(_state(10.0 + step), step=step)
    hash_calls.clear()

    steps = DistributedSteps(None, rank=1, world_size=2, gpu=None)  # a follower's view
    state, shared_state = _state(0.0), _state(0.0)
    assert steps.restore(own, state, shared, shared_state) == 5
    assert state.extra["value"] == 5.0 and shared_state.extra["value"] == 15.0
    assert shared_state.model is not None
    assert torch.all(shared_state.model.weight == 15.0)
    assert len(hash_calls) == 4  # two files of this rank's step 5, two of rank 0's, once each

    hash_calls.clear()
    alone = _state(0.0)
    assert steps.restore(own, alone) == 5 and alone.extra["value"] == 5.0
    assert len(hash_calls) == 2


@pytest.mark.usefixtures("process_group")
def test_ddp_resume_without_checkpoints_starts_at_zero(tmp_path: Path) -> None:
    steps = DistributedSteps(None, rank=1, world_size=2, gpu=None)
    assert steps.restore(CheckpointStore(tmp_path / "empty"), _state(0.0)) == 0


# -- Lightning ---------------------------------------------------------------------------------
def _callback(tmp_path: Path, store: CheckpointStore):  # type: ignore[no-untyped-def]
    pytest.importorskip("lightning")
    from caftm.integrations.lightning import CarbonAwareCallback

    controller, _ = sc.make_controller(sc.make_config(tmp_path), sc.make_trace(), sc.VirtualClock())
    return CarbonAwareCallback(ControllerSession(controller, refresher_thread=False), store)


def test_lightning_resume_hashes_the_newest_checkpoint_once(
    tmp_path: Path, hash_calls: list[int]
) -> None:
    store = CheckpointStore(tmp_path / "store")
    callback = _callback(tmp_path, store)
    for step in (3, 7):
        checkpoint = {"global_step": step, "state_dict": {"w": torch.full((2, 2), float(step))}}
        callback.checkpoint_io.save_checkpoint(checkpoint, f"caftm:step-{step}")
    hash_calls.clear()

    path = callback.resume_path()
    assert path == "caftm:latest"
    loaded = callback.checkpoint_io.load_checkpoint(path)
    assert loaded["global_step"] == 7 and torch.all(loaded["state_dict"]["w"] == 7.0)
    assert len(hash_calls) == 2  # tensors and state of step 7, once each

    hash_calls.clear()  # a later load reads (and verifies) the store again
    again = callback.checkpoint_io.load_checkpoint("caftm:step-7")
    assert again["global_step"] == 7 and len(hash_calls) == 2


def test_lightning_resume_path_of_an_empty_store_is_none(tmp_path: Path) -> None:
    assert _callback(tmp_path, CheckpointStore(tmp_path / "empty")).resume_path() is None


# -- the knob ----------------------------------------------------------------------------------
def test_session_and_ddp_followers_apply_settings_alike(tmp_path: Path) -> None:
    config = sc.make_config(tmp_path / "store")
    lead = GpuKnob(SimulatedBackend(), state_dir=tmp_path / "knob-0", handle_signals=False)
    follower = GpuSetup.from_config(config, SimulatedBackend(), knob_state_dir=tmp_path / "knob-1")
    controller, _ = sc.make_controller(config, sc.make_trace(), sc.VirtualClock())
    session = ControllerSession(controller, knob=lead, refresher_thread=False)
    steps = DistributedSteps(None, rank=1, world_size=2, gpu=follower)
    originals = (lead.backend.get(0, lead.kind), follower.knob.backend.get(0, lead.kind))
    wanted = lead.supported()[len(lead.supported()) // 2] + 0.4  # between supported values
    try:
        session.controller.hooks.apply_setting(wanted)  # the session's hook
        steps._apply_local(wanted)  # what a follower does on SET
        applied = lead.current()[0]
        assert applied in lead.supported() and applied != wanted  # snapped
        assert follower.knob.current()[0] == applied
        assert lead.backend.get(0, lead.kind) == applied
        session.controller.hooks.apply_setting(None)
        steps._apply_local(None)
        assert (lead.backend.get(0, lead.kind), follower.knob.backend.get(0, lead.kind)) == (
            originals
        )
    finally:
        lead.close()
        follower.knob.close()


def test_a_setting_without_a_knob_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    from caftm.integrations._core import apply_knob_setting

    with caplog.at_level("INFO", logger="caftm.integrations._core"):
        apply_knob_setting(None, 1410.0)
        DistributedSteps(None, rank=1, world_size=2, gpu=None)._apply_local(1200.0)
    assert "1410.0 requested; no knob" in caplog.text
    assert "1200.0 requested; no knob" in caplog.text
