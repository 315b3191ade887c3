"""Bad input to the checkpoint API gives one clear caftm error, never a raw library traceback."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ckpt_helpers import tree_checksum

from caftm.checkpoint import (
    CheckpointStore,
    ResumableSampler,
    TrainingState,
    decode_tree,
)
from caftm.errors import CheckpointError, ConfigError


@pytest.mark.parametrize("keep_last", ["3", 2.5, True])
def test_keep_last_of_the_wrong_type_is_refused(tmp_path: Path, keep_last: Any) -> None:
    with pytest.raises(ConfigError, match="keep_last must be an integer"):
        CheckpointStore(tmp_path, keep_last=keep_last)


@pytest.mark.parametrize("url", [None, 5, "", "  "])
def test_store_url_must_be_a_path(url: Any) -> None:
    with pytest.raises(ConfigError, match="non-empty path or URL"):
        CheckpointStore(url)


def test_store_options_and_filesystem_of_the_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="storage_options must be a dict"):
        CheckpointStore(tmp_path, storage_options="endpoint")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="fsspec filesystem"):
        CheckpointStore(tmp_path, filesystem=object())


@pytest.mark.parametrize("kind", ["missing archive", "missing argument"])
def test_a_filesystem_that_cannot_start_gives_one_checkpoint_error(
    tmp_path: Path, kind: str
) -> None:
    url = f"zip://a::file://{tmp_path}/missing.zip" if kind == "missing archive" else "reference://"
    with pytest.raises(CheckpointError, match="cannot open checkpoint store"):
        CheckpointStore(url)


def test_numpy_and_torch_integer_steps_are_saved_as_plain_ints(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=None)
    state = TrainingState(rng=False, extra={"x": 1})
    assert store.save(state, step=np.int64(4)).step == 4  # type: ignore[arg-type]
    assert store.save_async(state, step=torch.tensor(5)).wait().step == 5  # type: ignore[arg-type]
    assert [info.step for info in store.checkpoints()] == [4, 5]
    assert store.load(np.int64(5))["extra"] == {"x": 1}  # type: ignore[arg-type]


@pytest.mark.parametrize("step", [True, 2.5, "3", None])
def test_a_step_that_is_not_an_integer_is_refused(tmp_path: Path, step: Any) -> None:
    store = CheckpointStore(tmp_path)
    with pytest.raises(ConfigError, match="step must be an integer"):
        store.save(TrainingState(rng=False), step=step)
    with pytest.raises(ConfigError, match="step must be an integer"):
        store.save_async(TrainingState(rng=False), step=step)
    with pytest.raises(ConfigError, match="step must be an integer"):
        store.load(step)
    assert not list(tmp_path.iterdir())


def test_a_negative_step_is_refused_when_reading_too(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    for read in (store.load, store.verify):
        with pytest.raises(ConfigError, match="step must be >= 0, got -3"):
            read(-3)


def test_replacing_a_step_whose_manifest_cannot_be_deleted(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    (tmp_path / "step-000000007" / "MANIFEST.json").mkdir(parents=True)  # cannot be unlinked
    with pytest.raises(CheckpointError, match=r"cannot delete .*step-000000007/MANIFEST\.json"):
        store.save(TrainingState(rng=False), step=7)


def _nested(depth: int) -> Any:
    return functools.reduce(lambda inner, _: [inner], range(depth), 0)


def _self_referencing() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (_self_referencing(), "nested too deeply or contains itself"),
        (_nested(5000), "nested too deeply or contains itself"),
        (10**5000, r"state\.extra\.v: integer too large"),
        (torch.zeros(2, device="meta"), r"state\.extra\.v: a meta tensor"),
        (np.zeros(2, dtype=[("x", "<i4")]), r"state\.extra\.v: structured numpy dtype"),
    ],
    ids=["self-reference", "deep", "huge-int", "meta-tensor", "structured-numpy"],
)
def test_values_that_cannot_be_stored_faithfully_are_refused(
    tmp_path: Path, value: Any, message: str
) -> None:
    store = CheckpointStore(tmp_path)
    with pytest.raises(CheckpointError, match=message):
        store.save(TrainingState(rng=False, extra={"v": value}), step=1)
    assert store.checkpoints() == []


@pytest.mark.parametrize(
    "structure",
    [
        {"$t": "dict", "v": [1]},
        {"$t": "dict", "v": None},
        {"$t": "torch.device", "v": "no-such-device"},
        {"$t": "np.scalar", "dtype": "<f8", "b64": ""},
        {"$t": "dict", "v": {}, "ordered": True, "meta": {"$t": "dict", "v": []}},
    ],
)
def test_malformed_structures_decode_to_a_checkpoint_error(structure: Any) -> None:
    with pytest.raises(CheckpointError, match="malformed checkpoint structure"):
        decode_tree(structure, {})


def test_deeply_nested_state_file_is_reported_malformed(tmp_path: Path) -> None:
    """A state.json too deep for the JSON parser, with a consistent manifest, is refused."""
    store = CheckpointStore(tmp_path)
    info = store.save(TrainingState(rng=False), step=1)
    directory = Path(info.path)
    data = b"[" * 200_000 + b"]" * 200_000
    (directory / "state.json").write_bytes(data)
    manifest = json.loads((directory / "MANIFEST.json").read_bytes())
    for entry in manifest["files"]:
        if entry["name"] == "state.json":
            entry["size_bytes"], entry["sha256"] = len(data), tree_checksum(data)
    (directory / "MANIFEST.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"state\.json is malformed"):
        store.load(1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": 5}, r"model must have state_dict\(\)"),
        ({"scheduler": "cosine"}, r"scheduler must have state_dict\(\)"),
        ({"stateful": {"ema": 1.0}}, r"stateful\['ema'\] must have state_dict\(\)"),
        ({"stateful": [1]}, "stateful must be a dict"),
        ({"extra": None}, "extra must be a dict"),
        ({"extra": [1, 2]}, "extra must be a dict"),
    ],
)
def test_training_state_of_the_wrong_types_is_refused(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainingState(**fields)


def _trained(optimizer_class: type[torch.optim.Optimizer], **kwargs: Any) -> TrainingState:
    model = torch.nn.Linear(3, 2)
    optimizer = optimizer_class(model.parameters(), **kwargs)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    return TrainingState(model=model, optimizer=optimizer, rng=False)


@pytest.mark.parametrize(
    ("saved", "restored", "missing"),
    [
        ((torch.optim.SGD, {"lr": 0.1}), (torch.optim.Adam, {}), "'betas', 'eps'"),
        ((torch.optim.Adam, {}), (torch.optim.SGD, {"lr": 0.1}), "'dampening', 'momentum'"),
    ],
    ids=["sgd-into-adam", "adam-into-sgd"],
)
def test_restoring_another_optimizer_type_fails_at_restore_not_at_the_next_step(
    tmp_path: Path, saved: tuple[Any, Any], restored: tuple[Any, Any], missing: str
) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_trained(saved[0], **saved[1]), step=1)
    with pytest.raises(CheckpointError, match=rf"optimizer from .*step-000000001.*\[{missing}\]"):
        store.restore_latest(_trained(restored[0], **restored[1]))


def test_same_optimizer_type_still_restores(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(_trained(torch.optim.Adam), step=1)
    state = _trained(torch.optim.Adam)
    assert store.restore(state, 1) == 1
    assert state.optimizer is not None
    state.optimizer.step()


def test_missing_rng_state_suggests_rng_false(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(TrainingState(rng=False), step=1)
    with pytest.raises(CheckpointError, match=r"restore with rng=False or"):
        store.restore_latest(TrainingState())


class _Counter:
    def __init__(self) -> None:
        self.count = 0

    def state_dict(self) -> dict[str, int]:
        return {"count": self.count}

    def load_state_dict(self, state: Any, /) -> None:
        self.count = state.get("count")


def test_malformed_stateful_parts_give_a_checkpoint_error() -> None:
    state = TrainingState(rng=False, stateful={"counter": _Counter()})
    with pytest.raises(CheckpointError, match="malformed 'stateful'"):
        state.restore({"step": 1, "stateful": [1]})
    with pytest.raises(CheckpointError, match=r"cannot restore stateful\['counter'\]"):
        state.restore({"step": 1, "stateful": {"counter": None}})  # AttributeError inside


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dataset_len": 10.5}, "dataset_len must be an integer"),
        ({"dataset_len": None}, "dataset_len must be an integer"),
        ({"dataset_len": 10, "world_size": 2.0}, "world_size must be an integer"),
        ({"dataset_len": 10, "seed": 1.5}, "seed must be an integer"),
        ({"dataset_len": 10, "seed": 2**70}, "seed must be in"),
    ],
)
def test_sampler_arguments_of_the_wrong_type_are_refused(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        ResumableSampler(**kwargs)


def test_sampler_takes_numpy_integers() -> None:
    sampler = ResumableSampler(np.int64(6), seed=np.int64(2))  # type: ignore[arg-type]
    assert sorted(sampler) == list(range(6))
    sampler.record_consumed(np.int64(3))  # type: ignore[arg-type]
    assert sampler.state_dict()["index"] == 3 and type(sampler.state_dict()["index"]) is int


def test_sampler_methods_refuse_non_integers() -> None:
    sampler = ResumableSampler(5)
    with pytest.raises(ConfigError, match="epoch must be an integer"):
        sampler.set_epoch("1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="num_samples must be an integer"):
        sampler.record_consumed(1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change", [{"index": -5}, {"epoch": -1}, {"world_size": 0}, {"world_size": -2}]
)
def test_sampler_refuses_an_impossible_saved_position(change: dict[str, int]) -> None:
    saved = ResumableSampler(10, seed=3)
    iterator = iter(saved)
    for _ in range(4):
        next(iterator)
    sampler = ResumableSampler(10, seed=3)
    with pytest.raises(CheckpointError, match="invalid sampler state"):
        sampler.load_state_dict({**saved.state_dict(), **change})
    assert len(list(sampler)) == 10  # untouched: a fresh epoch
