"""HF Trainer through ``CarbonAwareTrainerCallback``: moved three times, resumed bit-identically."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

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


def test_the_fp16_grad_scaler_is_checkpointed_and_written_back(tmp_path: Path) -> None:
    """The Trainer's GradScaler sits on accelerate's optimiser; its scale must survive a resume
    (else fp16 training restarts at the initial scale: other weights)."""
    from accelerate import Accelerator
    from accelerate.optimizer import AcceleratedOptimizer
    from accelerate.state import AcceleratorState
    from transformers import TrainerControl, TrainerState, TrainingArguments

    model = wl.make_model()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    Accelerator(cpu=True)  # the state accelerate's optimiser reads
    try:
        optimizer = AcceleratedOptimizer(torch.optim.SGD(model.parameters(), lr=0.1), scaler=scaler)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    for _ in range(3):  # the scale grows at every finite step
        images, labels = wl.make_dataset()[:8]
        scaler.scale(torch.nn.functional.cross_entropy(model(images), labels)).backward()
        scaler.step(optimizer.optimizer)
        scaler.update()
    assert scaler.get_scale() == 8192.0
    store = CheckpointStore(tmp_path / "s")
    callback = _callback(store, tmp_path)
    state = TrainerState(global_step=3)
    callback.session.start()
    try:
        callback.session.preempt_requested = True  # checkpoint after this step
        callback.on_step_end(
            TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[]), state,
            TrainerControl(), model=model, optimizer=optimizer,
        )  # fmt: skip
    finally:
        callback.session.close()
    assert [info.step for info in store.checkpoints()] == [3]
    folder = Path(str(_callback(store, tmp_path).resume_checkpoint(tmp_path / "resume")))
    restored = torch.amp.GradScaler("cpu")
    restored.load_state_dict(torch.load(folder / "scaler.pt", weights_only=True))
    assert restored.get_scale() == 8192.0
