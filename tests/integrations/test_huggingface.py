"""HF Trainer through ``CarbonAwareTrainerCallback``: moved three times, resumed bit-identically."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("transformers")

import integ_workloads as wl
from hf_child import TOTAL_STEPS, run_segment
from integ_procs import load_params, run_child

from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.errors import CheckpointError
from caftm.integrations import ControllerSession
from caftm.integrations.huggingface import CarbonAwareTrainerCallback


def _run(tmp_path: Path, switch: tuple[int, int, int], fresh_process_segments: set[int]) -> None:
    reference, ref_params = run_segment(tmp_path / "reference", "site-a", ())
    assert (reference["steps_done"], reference["outcome"]) == (TOTAL_STEPS, "completed")
    store_dir = tmp_path / "moved"
    site, results = "site-a", []
    for segment in range(4):
        if segment in fresh_process_segments:
            out = tmp_path / f"params-{segment}.safetensors"
            args = ["--site", site, "--switch", ",".join(map(str, switch))]
            result = run_child("hf_child.py", str(store_dir), str(out), *args)
            params = load_params(out)
        else:
            result, params = run_segment(store_dir, site, switch)
        results.append(result)
        site = result["dest"] or site
    assert [r["start_step"] for r in results] == [0, *switch]
    assert [r["steps_done"] for r in results] == [*switch, TOTAL_STEPS]
    assert [r["outcome"] for r in results] == ["moved", "moved", "moved", "completed"]
    assert [r["dest"] for r in results] == ["site-b", "site-a", "site-b", None]
    wl.assert_bit_identical(ref_params, params)


def test_three_moves_random_steps_one_fresh_process(tmp_path: Path) -> None:
    s1, s2, s3 = sorted(random.Random(23).sample(range(1, TOTAL_STEPS), 3))
    _run(tmp_path, (s1, s2, s3), fresh_process_segments={1})


def test_three_moves_at_epoch_ends_and_mid_epoch(tmp_path: Path) -> None:
    """12 and 24 end an epoch (12 batches each); 5 is mid-epoch."""
    _run(tmp_path, (5, 12, 24), fresh_process_segments=set())


def test_resume_refuses_a_checkpoint_of_another_kind(tmp_path: Path) -> None:
    import integ_scenario as sc

    store = CheckpointStore(tmp_path / "store")
    model = wl.make_model()
    store.save(TrainingState(model=model), step=3)  # a plain-PyTorch checkpoint
    config = sc.make_config(tmp_path / "store")
    controller, _ = sc.make_controller(config, sc.make_trace(), sc.VirtualClock())
    callback = CarbonAwareTrainerCallback(ControllerSession(controller), store)
    with pytest.raises(CheckpointError):
        callback.resume_checkpoint(tmp_path / "resume")


def test_fresh_start_has_nothing_to_resume(tmp_path: Path) -> None:
    import integ_scenario as sc

    config = sc.make_config(tmp_path / "store")
    controller, _ = sc.make_controller(config, sc.make_trace(), sc.VirtualClock())
    callback = CarbonAwareTrainerCallback(
        ControllerSession(controller), CheckpointStore(tmp_path / "s")
    )
    assert callback.resume_checkpoint(tmp_path / "resume") is None
