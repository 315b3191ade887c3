"""CheckpointStore on local disk: round trip, bit-exact continuation, pruning, tampering, errors."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import pytest
import torch
from ckpt_training import final_tensors, make_run, train

from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.errors import CheckpointError, ConfigError


def small_state(value: float = 1.0) -> TrainingState:
    model = torch.nn.Linear(4, 3)
    with torch.no_grad():
        model.weight.fill_(value)
    return TrainingState(model=model, extra={"value": value, "nested": {"k": (1, 2)}})


def test_save_latest_restore_round_trip(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "store")
    assert store.latest() is None
    info = store.save(small_state(2.0), step=7)
    assert info.step == 7 and info.path.endswith("step-000000007")
    assert sorted(os.listdir(info.path)) == ["MANIFEST.json", "state.json", "tensors.safetensors"]
    manifest = json.loads((Path(info.path) / "MANIFEST.json").read_text())
    assert manifest["step"] == 7 and manifest["format_version"] == 2
    assert {f["name"] for f in manifest["files"]} == {"state.json", "tensors.safetensors"}

    latest = store.latest()
    assert latest is not None and latest.step == 7 and latest.manifest == info.manifest
    target = small_state(0.0)
    extra = target.extra
    assert store.restore(target, latest) == 7
    assert target.extra is extra and extra == {"value": 2.0, "nested": {"k": (1, 2)}}
    assert target.model is not None and torch.equal(target.model.weight, torch.full((3, 4), 2.0))


def test_file_url_and_plain_path_reach_the_same_store(tmp_path: Path) -> None:
    CheckpointStore(tmp_path).save(small_state(), step=1)
    info = CheckpointStore(f"file://{tmp_path}").latest()
    assert info is not None and info.step == 1


def test_continuation_after_restore_is_bit_identical(tmp_path: Path, deterministic: None) -> None:
    store = CheckpointStore(tmp_path)
    run = make_run()
    train(run, start_step=0, total_steps=70, store=store, checkpoint_every=35)
    train(run, start_step=70, total_steps=100)
    expected = final_tensors(run)

    resumed = make_run()
    info = store.restore_latest(resumed.state)
    assert info is not None and info.step == 70
    train(resumed, start_step=70, total_steps=100)
    actual = final_tensors(resumed)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


def test_keep_last_prunes_old_and_abandoned_partial_checkpoints(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep_last=2)
    state = small_state()
    store.save(state, step=1)
    (tmp_path / "step-000000002").mkdir()  # a write that died before its manifest
    (tmp_path / "step-000000002" / "tensors.safetensors.tmp-1-x").write_bytes(b"partial")
    (tmp_path / "step-000000009").mkdir()  # a partial one newer than anything complete
    store.save(state, step=3)
    assert (tmp_path / "step-000000002").exists() is False
    store.save(state, step=4)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["step-000000003", "step-000000004", "step-000000009"]
    assert [c.step for c in store.checkpoints()] == [3, 4]


def test_saving_the_same_step_again_replaces_it(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(small_state(1.0), step=5)
    store.save(small_state(3.0), step=5)
    target = small_state(0.0)
    store.restore(target, 5)
    assert target.extra["value"] == 3.0


def flip_byte(path: Path, offset: int = -10) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def edit_manifest(directory: Path, **changes: object) -> None:
    manifest = json.loads((directory / "MANIFEST.json").read_text())
    manifest.update(changes)
    (directory / "MANIFEST.json").write_text(json.dumps(manifest))


TAMPERINGS = {
    "flipped byte in tensors": lambda d: flip_byte(d / "tensors.safetensors"),
    "flipped byte in header": lambda d: flip_byte(d / "tensors.safetensors", 20),
    "flipped byte in state": lambda d: flip_byte(d / "state.json", 40),
    "truncated tensors": lambda d: (d / "tensors.safetensors").write_bytes(
        (d / "tensors.safetensors").read_bytes()[:-5]
    ),
    "missing manifest": lambda d: (d / "MANIFEST.json").unlink(),
    "empty manifest": lambda d: (d / "MANIFEST.json").write_bytes(b""),
    "manifest with wrong sha": lambda d: edit_manifest(
        d,
        files=[
            {**f, "sha256": "0" * 64} if f["name"] == "tensors.safetensors" else f
            for f in json.loads((d / "MANIFEST.json").read_text())["files"]
        ],
    ),
    "unknown format version": lambda d: edit_manifest(d, format_version=3),
    "unknown checksum scheme": lambda d: edit_manifest(d, checksum="blake3-1MiB"),
    "manifest for another step": lambda d: edit_manifest(d, step=1),
    "missing data file": lambda d: (d / "state.json").unlink(),
    "manifest pointing outside": lambda d: edit_manifest(
        d, files=[{"name": "../x", "size_bytes": 1, "sha256": "0" * 64}]
    ),
}


@pytest.mark.parametrize("tamper", list(TAMPERINGS), ids=list(TAMPERINGS))
def test_tampered_checkpoint_is_skipped_and_refused(
    tmp_path: Path, tamper: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = CheckpointStore(tmp_path)
    store.save(small_state(1.0), step=1)
    store.save(small_state(2.0), step=2)
    TAMPERINGS[tamper](tmp_path / "step-000000002")

    with caplog.at_level(logging.WARNING, logger="caftm.checkpoint.store"):
        latest = store.latest()
    assert latest is not None and latest.step == 1
    assert "skipping checkpoint" in caplog.text and "step-000000002" in caplog.text
    target = small_state(0.0)
    with pytest.raises(CheckpointError, match="step-000000002"):
        store.restore(target, 2)
    assert target.extra["value"] == 0.0  # nothing was applied
    info = store.restore_latest(target)
    assert info is not None and info.step == 1 and target.extra["value"] == 1.0


def test_nothing_complete_means_none(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(small_state(), step=1)
    (tmp_path / "step-000000001" / "MANIFEST.json").unlink()
    assert store.latest() is None
    assert store.restore_latest(small_state()) is None


def test_restoring_into_a_mismatched_state_fails_clearly(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path)
    store.save(small_state(), step=1)
    wrong_model = TrainingState(model=torch.nn.Linear(5, 3))
    with pytest.raises(CheckpointError, match="cannot restore model"):
        store.restore(wrong_model, 1)
    needs_optimizer = small_state()
    assert needs_optimizer.model is not None
    needs_optimizer.optimizer = torch.optim.SGD(needs_optimizer.model.parameters(), lr=0.1)
    with pytest.raises(CheckpointError, match="no optimizer state"):
        store.restore(needs_optimizer, 1)


def test_unwritable_location_raises_checkpoint_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the store's directory should be")
    with pytest.raises(CheckpointError, match="not-a-dir"):
        CheckpointStore(blocker / "store").save(small_state(), step=1)


def test_full_disk_raises_and_previous_checkpoint_stays(edge_fs: tuple[object, str]) -> None:
    fs, root = edge_fs
    store = CheckpointStore(root, filesystem=fs)
    store.save(small_state(1.0), step=1)
    fs.free_bytes = 100  # type: ignore[attr-defined]
    with pytest.raises(CheckpointError, match=r"step-000000002/tensors.safetensors.*No space"):
        store.save(small_state(2.0), step=2)
    fs.free_bytes = None  # type: ignore[attr-defined]
    latest = store.latest()
    assert latest is not None and latest.step == 1
    target = small_state(0.0)
    store.restore(target, latest)
    assert target.extra["value"] == 1.0


def test_invalid_arguments() -> None:
    with pytest.raises(ConfigError, match="keep_last must be an integer >= 1 or None, got 0"):
        CheckpointStore("/tmp/x", keep_last=0)
    with pytest.raises(CheckpointError, match=r"cannot checkpoint state\.extra\.fn"):
        CheckpointStore("memory://x").save(TrainingState(extra={"fn": print}), step=1)


@pytest.mark.parametrize("size", [0, 5, 64 * 2**20, 64 * 2**20 + 1, 3 * 64 * 2**20 + 17])
def test_checksum_is_the_sha256_tree_of_64mib_blocks(size: int) -> None:
    from ckpt_helpers import tree_checksum

    from caftm.checkpoint.checksum import tree_sha256

    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    pieces = [memoryview(data)[i : i + 10_000_019] for i in range(0, len(data), 10_000_019)]
    expected = tree_checksum(data)
    assert tree_sha256(pieces) == expected
    assert tree_sha256([data], streaming=True) == expected


@pytest.mark.filterwarnings("ignore:.*multi-threaded.*fork.*:DeprecationWarning")
def test_checksum_still_works_in_a_forked_child() -> None:
    """The hashing pool's threads do not survive fork: a child must start its own pool."""
    from caftm.checkpoint.checksum import tree_sha256

    data = b"x" * (2 * 64 * 2**20 + 1)  # three blocks: two go to the pool
    expected = tree_sha256([data])
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the digest, never return into pytest
        code = 1
        try:
            os.write(write_end, tree_sha256([data]).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + 30
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise AssertionError("checksumming in a forked child hung")
        time.sleep(0.05)
    with os.fdopen(read_end) as pipe:
        assert pipe.read() == expected
