"""HF Trainer through ``CarbonAwareTrainerCallback``: moved three times, resumed bit-identically."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("transformers")

import integ_scenario as sc
import integ_workloads as wl
from hf_child import TOTAL_STEPS, run_segment
from integ_procs import assert_three_moves_bit_identical

from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.errors import CheckpointError, ConfigError
from caftm.integrations import ControllerSession
from caftm.integrations._state import TreeHolder
from caftm.integrations.huggingface import CarbonAwareTrainerCallback


def _run(tmp_path: Path, switch: tuple[int, int, int], fresh_process_segments: set[int]) -> None:
    assert_three_moves_bit_identical(
        tmp_path, "hf_child.py", run_segment, TOTAL_STEPS, switch, fresh_process_segments
    )


@pytest.mark.slow  # four fresh processes
def test_three_moves_random_steps_one_fresh_process(tmp_path: Path) -> None:
    _run(tmp_path, sc.random_switch_steps(23, TOTAL_STEPS), fresh_process_segments={1})


def test_three_moves_at_epoch_ends_and_mid_epoch(tmp_path: Path) -> None:
    """12 and 24 end an epoch (12 batches each); 5 is mid-epoch."""
    _run(tmp_path, (5, 12, 24), fresh_process_segments=set())


def _callback(store: CheckpointStore, tmp_path: Path) -> CarbonAwareTrainerCallback:
    config = sc.make_config(tmp_path / "store")
    controller, _ = sc.make_controller(config, sc.make_trace(), sc.VirtualClock())
    return CarbonAwareTrainerCallback(ControllerSession(controller), store)


def test_resume_refuses_a_plain_pytorch_checkpoint(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "store")
    store.save(TrainingState(model=wl.make_model()), step=3)  # a plain-PyTorch checkpoint
    with pytest.raises(CheckpointError, match=r"holds no state for stateful\['huggingface'\]"):
        _callback(store, tmp_path).resume_checkpoint(tmp_path / "resume")
    assert not (tmp_path / "resume").exists()


def test_resume_refuses_a_checkpoint_of_another_kind(tmp_path: Path) -> None:
    """A 'huggingface' entry that is not a Trainer checkpoint (another tool's tree)."""
    store = CheckpointStore(tmp_path / "store")
    other = TreeHolder({"model": {}, "epoch": 2})  # no trainer_state, no controller
    store.save(TrainingState(stateful={"huggingface": other}, rng=False), step=3)
    with pytest.raises(CheckpointError, match=r"step-000000003 is not a Hugging Face Trainer one"):
        _callback(store, tmp_path).resume_checkpoint(tmp_path / "resume")
    assert not (tmp_path / "resume").exists()


def test_fresh_start_has_nothing_to_resume(tmp_path: Path) -> None:
    config = sc.make_config(tmp_path / "store")
    controller, _ = sc.make_controller(config, sc.make_trace(), sc.VirtualClock())
    callback = CarbonAwareTrainerCallback(
        ControllerSession(controller), CheckpointStore(tmp_path / "s")
    )
    assert callback.resume_checkpoint(tmp_path / "resume") is None


def test_more_than_one_process_is_refused_before_the_controller_starts(tmp_path: Path) -> None:
    config = sc.make_config(tmp_path / "store")
    controller, _ = sc.make_controller(config, sc.make_trace(), sc.VirtualClock())
    callback = CarbonAwareTrainerCallback(
        ControllerSession(controller), CheckpointStore(tmp_path / "s")
    )
    args = SimpleNamespace(world_size=2)
    with pytest.raises(ConfigError, match="one process"):
        callback.on_train_begin(args, None, None)  # type: ignore[arg-type]
    assert not callback._started
