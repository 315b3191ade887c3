"""Lightning through ``CarbonAwareCallback``: moved three times, resumed bit-identically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightning")

import integ_scenario as sc
import integ_workloads as wl
from integ_procs import assert_three_moves_bit_identical
from lightning_child import TOTAL_STEPS, run_segment

from caftm.checkpoint import CheckpointStore, ResumableSampler
from caftm.errors import CheckpointError, ConfigError
from caftm.integrations import ControllerSession
from caftm.integrations.lightning import (
    CaftmCheckpointIO,
    CarbonAwareCallback,
    ResumableDataLoader,
)


def _run(tmp_path: Path, switch: tuple[int, int, int], fresh_process_segments: set[int]) -> None:
    assert_three_moves_bit_identical(
        tmp_path, "lightning_child.py", run_segment, TOTAL_STEPS, switch, fresh_process_segments
    )


@pytest.mark.slow  # four fresh processes
@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # lightning's pytree use
@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
def test_three_moves_random_steps_one_fresh_process(tmp_path: Path) -> None:
    _run(tmp_path, sc.random_switch_steps(23, TOTAL_STEPS), fresh_process_segments={1})


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


def test_more_than_one_process_is_refused_before_the_controller_starts(tmp_path: Path) -> None:
    import lightning.pytorch as pl
    from lightning_child import LitCNN

    config = sc.make_config(tmp_path / "store")
    controller, _ = sc.make_controller(config, sc.make_trace(), sc.VirtualClock())
    callback = CarbonAwareCallback(ControllerSession(controller), CheckpointStore(tmp_path / "s"))
    trainer = pl.Trainer(  # configured for two DDP processes; never launched
        accelerator="cpu", devices=2, strategy="ddp", plugins=[callback.checkpoint_io],
        callbacks=[callback], logger=False, enable_progress_bar=False,
    )  # fmt: skip
    assert trainer.world_size == 2
    with pytest.raises(ConfigError, match="one process"):
        callback.on_fit_start(trainer, LitCNN())
    assert not controller._started  # refused before the controller started


def _fit_with(
    loader: Any, tmp_path: Path, switch: tuple[int, ...], built: list[Any] | None = None,
    **options: Any,
) -> Any:  # fmt: skip
    """Fit the scenario's module on ``loader`` (moving at ``switch[0]``); returns (trainer,
    callback, controller), also appended to ``built`` before fitting."""
    import lightning.pytorch as pl
    from lightning_child import DriveTrace, LitCNN

    wl.deterministic()
    config = sc.make_config(tmp_path / "store", total_steps=TOTAL_STEPS)
    clock = sc.VirtualClock()
    controller, refresher = sc.make_controller(config, sc.make_trace(switch), clock)
    store = CheckpointStore(tmp_path / "store", keep_last=2)
    callback = CarbonAwareCallback(
        ControllerSession(controller, refresher_thread=False), store, **options
    )
    trainer = pl.Trainer(
        accelerator="cpu", max_steps=TOTAL_STEPS, logger=False, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False,
        callbacks=[DriveTrace(clock, refresher), callback], plugins=[callback.checkpoint_io],
    )  # fmt: skip
    if built is not None:
        built.extend((trainer, callback, controller))
    trainer.fit(LitCNN(), loader, ckpt_path=callback.resume_path())
    return trainer, callback, controller


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # lightning's pytree use
@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
def test_a_shuffling_loader_without_the_resumable_sampler_is_refused_before_training(
    tmp_path: Path,
) -> None:
    from torch.utils.data import DataLoader

    shuffling = DataLoader(wl.make_dataset(), batch_size=wl.BATCH_SIZE, shuffle=True)

    with pytest.raises(ConfigError) as refused:
        _fit_with(shuffling, tmp_path / "refused", (5, 12, 23))
    message = str(refused.value)
    assert "ResumableDataLoader" in message and "allow_unsaved_state=True" in message
    assert "RandomSampler" in message and "\n" not in message
    assert not CheckpointStore(tmp_path / "refused" / "store").steps_present()  # nothing ran
    # opted out: it trains, and its move's checkpoint is written
    trainer, callback, _ = _fit_with(
        DataLoader(wl.make_dataset(), batch_size=wl.BATCH_SIZE, shuffle=True),
        tmp_path / "allowed", (5, 12, 23), allow_unsaved_state=True,
    )  # fmt: skip
    assert callback.stop_request is not None and callback.stop_request.outcome.value == "moved"
    assert CheckpointStore(tmp_path / "allowed" / "store").steps_present() == [trainer.global_step]


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # lightning's pytree use
@pytest.mark.filterwarnings("ignore:.*does not have many workers.*")
def test_the_loader_refusal_comes_before_the_controller_starts(tmp_path: Path) -> None:
    from torch.utils.data import DataLoader

    plain = DataLoader(wl.make_dataset(), batch_size=wl.BATCH_SIZE)
    built: list[Any] = []
    with pytest.raises(ConfigError, match="SequentialSampler"):
        _fit_with(plain, tmp_path, (), built)  # never checkpoints: the check must not wait
    trainer, _, controller = built
    assert trainer.global_step == 0 and not controller._started
