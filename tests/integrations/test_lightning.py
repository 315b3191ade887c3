"""Lightning through ``CarbonAwareCallback``: moved three times, resumed bit-identically."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

pytest.importorskip("lightning")

import integ_workloads as wl
from integ_procs import load_params, run_child
from lightning_child import TOTAL_STEPS, run_segment

from caftm.checkpoint import CheckpointStore, ResumableSampler
from caftm.errors import CheckpointError, ConfigError
from caftm.integrations.lightning import CaftmCheckpointIO, ResumableDataLoader


def _run(tmp_path: Path, switch: tuple[int, int, int], fresh_process_segments: set[int]) -> None:
    reference, ref_params = run_segment(tmp_path / "reference", "site-a", ())
    assert (reference["steps_done"], reference["outcome"]) == (TOTAL_STEPS, "completed")
    store_dir = tmp_path / "moved"
    site, results = "site-a", []
    for segment in range(4):
        if segment in fresh_process_segments:
            out = tmp_path / f"params-{segment}.safetensors"
            args = ["--site", site, "--switch", ",".join(map(str, switch))]
            result = run_child("lightning_child.py", str(store_dir), str(out), *args)
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


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # lightning's pytree use
@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
def test_three_moves_random_steps_one_fresh_process(tmp_path: Path) -> None:
    s1, s2, s3 = sorted(random.Random(23).sample(range(1, TOTAL_STEPS), 3))
    _run(tmp_path, (s1, s2, s3), fresh_process_segments={1})


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # lightning's pytree use
@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
def test_three_moves_at_epoch_ends_and_mid_epoch(tmp_path: Path) -> None:
    """12 and 24 end an epoch (12 batches each); 5 is mid-epoch."""
    _run(tmp_path, (5, 12, 24), fresh_process_segments=set())


def test_loader_needs_a_resumable_sampler() -> None:
    dataset = wl.make_dataset()
    with pytest.raises(ConfigError, match="ResumableSampler"):
        ResumableDataLoader(dataset, batch_size=4, sampler=None)  # type: ignore[arg-type]
    loader = ResumableDataLoader(dataset, batch_size=4, sampler=ResumableSampler(len(dataset)))
    loader.mark_position(epoch=0, samples_used=len(dataset))  # end of epoch 0
    assert (loader.state_dict()["epoch"], loader.state_dict()["index"]) == (1, 0)


def test_checkpoint_io_refuses_an_empty_store(tmp_path: Path) -> None:
    io = CaftmCheckpointIO(CheckpointStore(tmp_path / "empty"))
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        io.load_checkpoint("caftm:latest")
