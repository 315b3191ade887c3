"""CheckpointStore on s3:// through s3fs, against a moto S3 server on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

import pytest
import torch

from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.errors import CheckpointError

pytestmark = pytest.mark.network
s3fs = pytest.importorskip("s3fs")


def state_with(value: float) -> TrainingState:
    model = torch.nn.Linear(16, 4)
    with torch.no_grad():
        model.weight.fill_(value)
    return TrainingState(model=model, extra={"value": value})


def test_s3_save_restore_and_keep_last(s3: tuple[Any, dict[str, Any], str]) -> None:
    fs, options, url = s3
    store = CheckpointStore(url, keep_last=2, storage_options=options)
    for step in (10, 20, 30):
        info = store.save(state_with(float(step)), step=step)
        assert info.path == f"{url}/step-{step:09d}"
    assert [c.step for c in store.checkpoints()] == [20, 30]
    fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(url.removeprefix("s3://"))) == [
        "step-000000020",
        "step-000000030",
    ]
    target = state_with(0.0)
    info = store.restore_latest(target)
    assert info is not None and info.step == 30 and target.extra["value"] == 30.0
    assert target.model is not None and torch.equal(target.model.weight, torch.full((4, 16), 30.0))


def test_s3_async_save(s3: tuple[Any, dict[str, Any], str]) -> None:
    _, options, url = s3
    with CheckpointStore(url, storage_options=options) as store:
        handle = store.save_async(state_with(5.0), step=5)
        assert handle.wait(timeout_s=60).step == 5
    target = state_with(0.0)
    assert CheckpointStore(url, storage_options=options).restore(target, 5) == 5
    assert target.extra["value"] == 5.0


@pytest.mark.parametrize("tamper", ["flip", "truncate", "no-manifest", "wrong-sha"])
def test_s3_tampered_checkpoint_is_skipped(
    s3: tuple[Any, dict[str, Any], str], tamper: str, caplog: pytest.LogCaptureFixture
) -> None:
    fs, options, url = s3
    store = CheckpointStore(url, storage_options=options)
    store.save(state_with(1.0), step=1)
    store.save(state_with(2.0), step=2)
    directory = f"{url.removeprefix('s3://')}/step-000000002"
    tensors = f"{directory}/tensors.safetensors"
    if tamper == "flip":
        data = bytearray(fs.cat_file(tensors))
        data[-3] ^= 0xFF
        fs.pipe_file(tensors, bytes(data))
    elif tamper == "truncate":
        fs.pipe_file(tensors, fs.cat_file(tensors)[:100])
    elif tamper == "no-manifest":
        fs.rm_file(f"{directory}/MANIFEST.json")
    else:
        manifest = json.loads(fs.cat_file(f"{directory}/MANIFEST.json"))
        manifest["files"][0]["sha256"] = "f" * 64
        fs.pipe_file(f"{directory}/MANIFEST.json", json.dumps(manifest).encode())

    with caplog.at_level(logging.WARNING, logger="caftm.checkpoint.store"):
        latest = store.latest()
    assert latest is not None and latest.step == 1
    assert "step-000000002" in caplog.text
    with pytest.raises(CheckpointError, match="step-000000002"):
        store.restore(state_with(0.0), 2)


def test_s3_missing_bucket_raises_checkpoint_error(s3: tuple[Any, dict[str, Any], str]) -> None:
    _, options, _ = s3
    store = CheckpointStore(
        f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x", storage_options=options
    )
    with pytest.raises(CheckpointError, match="no-such-bucket"):
        store.save(state_with(1.0), step=1)
