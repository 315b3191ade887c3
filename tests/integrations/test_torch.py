"""Plain PyTorch through ``CarbonAwareTraining``: moved three times, paused once, resumed
bit-identically from real checkpoint files."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import integ_scenario as sc
import integ_workloads as wl
import pytest
import torch
from integ_procs import assert_three_moves_bit_identical, spawn
from torch_child import TOTAL_STEPS, run_segment

from caftm.checkpoint import CheckpointStore
from caftm.errors import ConfigError
from caftm.integrations.torch import CarbonAwareTraining


@pytest.mark.slow  # four fresh processes
def test_three_moves_resume_bit_identical(tmp_path: Path) -> None:
    switch = sc.random_switch_steps(11, TOTAL_STEPS)
    store_dir = assert_three_moves_bit_identical(  # every other segment in a fresh process
        tmp_path, "torch_child.py", run_segment, TOTAL_STEPS, switch, {1, 3}
    )
    kept = [info.step for info in CheckpointStore(store_dir).checkpoints()]
    # keep_last=2: the last move's checkpoint and the one taken at completion (a rerun trains
    # nothing)
    assert kept == [switch[-1], TOTAL_STEPS]


def test_pause_then_resume_bit_identical(tmp_path: Path) -> None:
    """suspend-resume never moves: a one-step spike above θ pauses the job (checkpoint, stop);
    the restarted job carries on where it stopped."""
    _, ref_params = run_segment(tmp_path / "reference", "site-a", (), policy="suspend-resume")
    spike = 9
    switch = (spike, spike + 1, sc.TRACE_STEPS)
    store_dir = tmp_path / "paused"
    first, _ = run_segment(store_dir, "site-a", switch, policy="suspend-resume")
    assert (first["outcome"], first["steps_done"], first["dest"]) == ("paused", spike, None)
    assert first["until_s"] > sc.START.timestamp() + spike * sc.STEP_S
    second, params = run_segment(store_dir, "site-a", switch, policy="suspend-resume")
    assert (second["start_step"], second["outcome"]) == (spike, "completed")
    wl.assert_bit_identical(ref_params, params)


def test_a_scheduler_left_out_is_refused_in_one_line_naming_it(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.optim.lr_scheduler.StepLR(optimizer, step_size=5)  # bound, never passed
    with pytest.raises(ConfigError) as refused:
        _training(tmp_path, model, optimizer=optimizer)
    message = str(refused.value)
    assert "\n" not in message and "scheduler=" in message and "allow_unsaved_state" in message
    assert not CheckpointStore(tmp_path).checkpoints()


def test_a_scheduler_given_as_scheduler_or_stateful_or_opted_out_starts(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5)
    for kwargs in (
        {"scheduler": scheduler},
        {"stateful": {"warmup": scheduler}},
        {"allow_unsaved_state": True},
    ):
        with _training(tmp_path / next(iter(kwargs)), model,
                       optimizer=optimizer, **kwargs) as caftm:  # fmt: skip
            caftm.step()
        assert caftm.steps_done == 1


def test_the_opted_out_scheduler_restarts_so_a_resume_differs(tmp_path: Path) -> None:
    """What the refusal prevents: the pause test's run with the scheduler not checkpointed
    ends with other weights than the uninterrupted run."""
    _, ref_params = run_segment(tmp_path / "reference", "site-a", (), policy="suspend-resume")
    switch = (9, 10, sc.TRACE_STEPS)
    store_dir = tmp_path / "paused"
    run_segment(store_dir, "site-a", switch, policy="suspend-resume", unsaved_scheduler=True)
    second, params = run_segment(
        store_dir, "site-a", switch, policy="suspend-resume", unsaved_scheduler=True
    )
    assert (second["start_step"], second["outcome"]) == (9, "completed")
    with pytest.raises(AssertionError, match="tensors differ after resume"):
        wl.assert_bit_identical(ref_params, params)


def test_killed_process_resumes_from_the_last_periodic_checkpoint(tmp_path: Path) -> None:
    """kill -9 at step 17 with a checkpoint every 5 steps: the restart redoes steps 16-17."""
    _, ref_params = run_segment(tmp_path / "reference", "site-a", ())
    store_dir = tmp_path / "crashed"
    out = tmp_path / "never-written.safetensors"
    done = spawn("torch_child.py", str(store_dir), str(out), "--every", "5", "--crash-at", "17")
    assert done.returncode == -signal.SIGKILL and not out.exists()
    assert [info.step for info in CheckpointStore(store_dir).checkpoints()] == [10, 15]
    result, params = run_segment(store_dir, "site-a", (), every=5)
    assert (result["start_step"], result["outcome"]) == (15, "completed")
    wl.assert_bit_identical(ref_params, params)


def test_mismatched_params_are_detected() -> None:
    """The bit-identity check itself fails on a one-ulp difference."""
    params = wl.parameters_of(wl.make_model())
    nudged = {k: v.clone() for k, v in params.items()}
    flat = nudged["head.bias"].view(-1)
    flat[0] = flat[0].nextafter(flat[0] + 1)
    try:
        wl.assert_bit_identical(params, nudged)
    except AssertionError as e:
        assert "head.bias" in str(e)
    else:
        raise AssertionError("a one-ulp difference went unnoticed")


def _training(store_dir: Path, model: torch.nn.Module, **kwargs: Any) -> CarbonAwareTraining:
    config = sc.make_config(store_dir, total_steps=TOTAL_STEPS)
    controller, _ = sc.make_controller(config, sc.make_trace(), sc.VirtualClock())
    return CarbonAwareTraining(
        config, model=model, controller=controller, gpu=None, refresher_thread=False, **kwargs
    )


def test_step_and_save_outside_the_with_block_are_refused(tmp_path: Path) -> None:
    """Before entering nothing is restored: a save then would overwrite real work."""
    trained = torch.nn.Linear(2, 1)
    with _training(tmp_path, trained) as caftm:
        caftm.step()
        caftm.save()
    with pytest.raises(ConfigError, match=r"step\(\) called outside its `with` block"):
        caftm.step()  # after the block: the controller is closed
    assert caftm.steps_done == 1
    fresh = _training(tmp_path, torch.nn.Linear(2, 1))
    with pytest.raises(ConfigError, match=r"step\(\) called outside its `with` block"):
        fresh.step()
    with pytest.raises(ConfigError, match=r"save\(\) called outside its `with` block"):
        fresh.save()
    saved = CheckpointStore(tmp_path).load(1)["model"]
    assert torch.equal(saved["weight"], trained.weight.detach())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"checkpoint_every_steps": 2.5}, "checkpoint_every_steps must be an integer"),
        ({"checkpoint_every_steps": "5"}, "checkpoint_every_steps must be an integer"),
        ({"stateful": [1]}, "stateful must be a dict"),
        ({"store": "/tmp/somewhere"}, "store must be a CheckpointStore"),
        ({"gpu": 0}, "gpu must be a GpuSetup"),
    ],
)
def test_arguments_of_the_wrong_type_are_refused_up_front(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    config = sc.make_config(tmp_path, total_steps=TOTAL_STEPS)
    with pytest.raises(ConfigError, match=message):
        CarbonAwareTraining(config, model=torch.nn.Linear(2, 1), refresher_thread=False, **kwargs)
