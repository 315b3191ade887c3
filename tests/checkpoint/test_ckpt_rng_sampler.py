"""Global RNG capture/restore, and the resumable, shardable sampler."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from caftm.checkpoint import ResumableSampler, capture_rng_state, restore_rng_state
from caftm.errors import CheckpointError, ConfigError


def draws() -> tuple[float, float, float, float]:
    return (random.random(), random.gauss(0, 1), float(np.random.normal()), torch.rand(1).item())


def test_rng_state_restores_every_generator() -> None:
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.normal()
    state = capture_rng_state()
    first = [draws() for _ in range(3)]
    restore_rng_state(state)
    assert [draws() for _ in range(3)] == first


def test_rng_state_missing_part_raises() -> None:
    state = capture_rng_state()
    del state["numpy"]
    with pytest.raises(CheckpointError, match="RNG"):
        restore_rng_state(state)


def epoch_orders(sampler: ResumableSampler, epochs: int) -> list[list[int]]:
    return [list(sampler) for _ in range(epochs)]


def test_mid_epoch_resume_continues_the_same_order() -> None:
    reference = epoch_orders(ResumableSampler(50, seed=3), 3)
    assert reference[0] != reference[1]  # reshuffled each epoch
    assert sorted(reference[0]) == list(range(50))

    sampler = ResumableSampler(50, seed=3)
    seen = list(sampler)  # epoch 0
    iterator = iter(sampler)
    seen += [next(iterator) for _ in range(17)]
    saved = sampler.state_dict()
    assert saved["epoch"] == 1 and saved["index"] == 17

    resumed = ResumableSampler(50, seed=999)  # the saved seed wins
    resumed.load_state_dict(saved)
    seen += list(resumed) + list(resumed)
    assert seen == [i for order in reference for i in order]


def test_works_with_dataloader_and_set_epoch() -> None:
    sampler = ResumableSampler(20, seed=1)
    loader = DataLoader(list(range(20)), batch_size=4, sampler=sampler, generator=torch.Generator())
    batches = iter(loader)
    first = [next(batches).tolist() for _ in range(2)]
    state = sampler.state_dict()
    assert state["index"] == 8

    resumed = ResumableSampler(20, seed=1)
    resumed.load_state_dict(state)
    resumed.set_epoch(0)  # DistributedSampler habit: same epoch keeps the position
    rest = [b.tolist() for b in DataLoader(list(range(20)), batch_size=4, sampler=resumed)]
    order = ResumableSampler(20, seed=1).epoch_indices(0)
    assert [i for b in first + rest for i in b] == order
    resumed.set_epoch(5)
    assert resumed.index == 0 and resumed.epoch == 5


@pytest.mark.parametrize(
    ("length", "world", "drop_last"), [(10, 3, False), (10, 3, True), (9, 3, False)]
)
def test_ranks_get_disjoint_equal_shares(length: int, world: int, drop_last: bool) -> None:
    shares = [
        ResumableSampler(
            length, seed=4, rank=r, world_size=world, drop_last=drop_last
        ).epoch_indices(2)
        for r in range(world)
    ]
    sizes = {len(s) for s in shares}
    assert len(sizes) == 1
    flat = [i for s in shares for i in s]
    if drop_last:
        assert len(set(flat)) == len(flat) == length // world * world
    else:
        assert set(flat) == set(range(length)) and len(flat) == -(-length // world) * world


def test_record_consumed_overrides_prefetched_position() -> None:
    sampler = ResumableSampler(12, shuffle=False)
    iterator = iter(sampler)
    for _ in range(8):  # a loader fetched ahead
        next(iterator)
    sampler.record_consumed(4)
    assert sampler.state_dict()["index"] == 4
    with pytest.raises(ConfigError, match=r"num_samples must be in \[0, 12\], got 13"):
        sampler.record_consumed(13)


def test_wrong_dataset_length_and_bad_config_are_refused() -> None:
    state = ResumableSampler(10).state_dict()
    with pytest.raises(CheckpointError, match="same dataset"):
        ResumableSampler(11).load_state_dict(state)
    with pytest.raises(ConfigError, match="need 0 <= rank < world_size, got rank=2 world_size=2"):
        ResumableSampler(10, rank=2, world_size=2)


def test_world_size_change_maps_position_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    sampler = ResumableSampler(40, world_size=2)
    sampler.load_state_dict({**ResumableSampler(40, world_size=4).state_dict(), "index": 6})
    assert sampler.index == 12
    assert "not be bit-identical" in caplog.text
