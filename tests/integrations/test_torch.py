"""Plain PyTorch through ``CarbonAwareTraining``: moved three times, paused once, resumed
bit-identically from real checkpoint files."""

from __future__ import annotations

import signal
from pathlib import Path

import integ_scenario as sc
import integ_workloads as wl
from integ_procs import assert_three_moves_bit_identical, spawn
from torch_child import TOTAL_STEPS, run_segment

from caftm.checkpoint import CheckpointStore


def test_three_moves_resume_bit_identical(tmp_path: Path) -> None:
    switch = sc.random_switch_steps(11, TOTAL_STEPS)
    store_dir = assert_three_moves_bit_identical(  # every other segment in a fresh process
        tmp_path, "torch_child.py", run_segment, TOTAL_STEPS, switch, {1, 3}
    )
    kept = [info.step for info in CheckpointStore(store_dir).checkpoints()]
    assert kept == list(switch[1:])  # keep_last=2


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
