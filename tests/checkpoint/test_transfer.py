"""transfer_latest: real checkpoints moved between local directories and S3 (moto on 127.0.0.1)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from ckpt_helpers import EdgeMemoryFS

from caftm.checkpoint import (
    CheckpointStore,
    TrainingState,
    TransferError,
    TransferResult,
    transfer_latest,
)
from caftm.errors import CheckpointError, ConfigError, ExecutorError

HERE = Path(__file__).resolve().parent
WIDTH = 1024  # floats per row: a row is 4 KiB


def model_of(seed: int, rows: int = 16) -> torch.nn.Linear:
    """A model with reproducible random parameters (rows x 4 KiB of weights)."""
    generator = torch.Generator().manual_seed(seed)
    model = torch.nn.Linear(WIDTH, rows)
    with torch.no_grad():
        model.weight.copy_(torch.randn(rows, WIDTH, generator=generator))
        model.bias.copy_(torch.randn(rows, generator=generator))
    return model


def save(url: str, step: int, seed: int, *, rows: int = 16, **options: Any) -> torch.nn.Linear:
    """Write a real checkpoint of a fresh model at ``step``; returns the model."""
    model = model_of(seed, rows)
    CheckpointStore(url, keep_last=None, **options).save(TrainingState(model=model), step=step)
    return model


def restored(url: str, *, rows: int = 16, **options: Any) -> tuple[int, torch.nn.Linear]:
    """The newest verified checkpoint at ``url``, restored into a zeroed model."""
    store = CheckpointStore(url, keep_last=None, **options)
    info = store.latest()
    assert info is not None, f"no complete checkpoint at {url}"
    model = torch.nn.Linear(WIDTH, rows)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    store.restore(TrainingState(model=model), info)
    return info.step, model


def bit_identical(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(
        left[k].dtype == right[k].dtype
        and torch.equal(left[k].view(torch.int32), right[k].view(torch.int32))
        for k in left
    )


def files_under(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def bytes_under(root: Path) -> int:
    total = 0
    for directory, _, names in os.walk(root):
        for name in names:
            with contextlib.suppress(FileNotFoundError):  # renamed meanwhile
                total += os.path.getsize(os.path.join(directory, name))
    return total


def flip_byte(path: Path, offset: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def step_size(url: str, step: int, **options: Any) -> int:
    """Bytes of a step's data files plus its manifest."""
    info = CheckpointStore(url, keep_last=None, **options).verify(step)
    return info.size_bytes + len(info.manifest.to_json())


# ---------------------------------------------------------------------------- the happy paths
@pytest.mark.parametrize(
    ("src_kind", "dst_kind"),
    [("local", "local"), ("local", "s3"), ("s3", "local"), ("s3", "s3")],
)
def test_moves_newest_step_bit_identical(
    request: pytest.FixtureRequest, tmp_path: Path, src_kind: str, dst_kind: str
) -> None:
    def site(kind: str, name: str) -> tuple[str, dict[str, Any]]:
        if kind == "local":
            return str(tmp_path / name), {}
        _, options, url = request.getfixturevalue("s3")
        return f"{url}/{name}", {"storage_options": options}

    src, src_opts = site(src_kind, "KR")
    dst, dst_opts = site(dst_kind, "FR")
    save(src, 10, seed=1, **src_opts)
    newest = save(src, 20, seed=2, **src_opts)
    progress: list[tuple[int, int]] = []
    result = transfer_latest(
        src,
        dst,
        src_storage_options=src_opts.get("storage_options"),
        dst_storage_options=dst_opts.get("storage_options"),
        on_progress=lambda done, total: progress.append((done, total)),
    )
    assert isinstance(result, TransferResult)
    total = step_size(src, 20, **src_opts)
    assert (result.step, result.files, result.skipped_bytes) == (20, 3, 0)
    assert result.bytes == total and result.seconds > 0 and result.ranks == 1
    assert (result.src_url, result.dst_url) == (src, dst) and not result.pruned_source
    assert progress[-1] == (total, total)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)
    step, model = restored(dst, **dst_opts)
    assert step == 20 and bit_identical(model, newest)
    assert [c.step for c in CheckpointStore(dst, **dst_opts).checkpoints()] == [20]
    assert CheckpointStore(src, **src_opts).verify(20).step == 20  # the source is kept

    again = transfer_latest(
        src,
        dst,
        src_storage_options=src_opts.get("storage_options"),
        dst_storage_options=dst_opts.get("storage_options"),
    )
    assert again is not None and (again.bytes, again.files, again.skipped_bytes) == (0, 0, total)


def test_fresh_source_returns_none(tmp_path: Path) -> None:
    assert transfer_latest(str(tmp_path / "never-written"), str(tmp_path / "dst")) is None
    (tmp_path / "empty").mkdir()
    assert transfer_latest(str(tmp_path / "empty"), str(tmp_path / "dst")) is None
    assert not (tmp_path / "dst").exists()


def test_source_with_only_incomplete_steps_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "KR"
    save(str(src), 5, seed=1)
    (src / "step-000000005" / "MANIFEST.json").unlink()
    with pytest.raises(CheckpointError, match=f"no complete checkpoint at {src}"):
        transfer_latest(str(src), str(tmp_path / "FR"))
    assert not (tmp_path / "FR").exists()


def test_ddp_moves_newest_step_complete_on_every_rank(tmp_path: Path) -> None:
    src, dst = tmp_path / "KR", tmp_path / "FR"
    models = {(rank, step): save(str(src / f"rank-{rank:05d}"), step, seed=10 * rank + step)
              for rank, step in [(0, 1), (1, 1), (0, 2)]}  # fmt: skip
    result = transfer_latest(str(src), str(dst))
    assert result is not None and (result.step, result.ranks, result.files) == (1, 2, 6)
    for rank in (0, 1):
        step, model = restored(str(dst / f"rank-{rank:05d}"))
        assert step == 1 and bit_identical(model, models[(rank, 1)])
    assert sorted(p.name for p in dst.iterdir()) == ["rank-00000", "rank-00001"]
    assert not (dst / "rank-00000" / "step-000000002").exists()


def test_ddp_with_a_missing_rank_store_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "KR"
    save(str(src / "rank-00000"), 1, seed=1)
    save(str(src / "rank-00002"), 1, seed=2)
    with pytest.raises(CheckpointError, match="not rank 1"):
        transfer_latest(str(src), str(tmp_path / "FR"))


# ---------------------------------------------------------------------------- faults
def test_killed_halfway_then_resumed(tmp_path: Path) -> None:
    src, dst = tmp_path / "KR", tmp_path / "FR"
    rows = 2048  # 8 MiB of weights per rank
    models = [save(str(src / f"rank-{r:05d}"), 7, seed=r, rows=rows) for r in (0, 1)]
    total = sum(step_size(str(src / f"rank-{r:05d}"), 7) for r in (0, 1))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, str(HERE / "transfer_child.py"), str(src), str(dst), "8e6", "262144"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while bytes_under(dst) < 0.55 * total:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the transfer never got halfway"
            time.sleep(0.005)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    at_kill = bytes_under(dst)
    assert 0.5 * total <= at_kill < total
    assert not list(dst.rglob("MANIFEST.json"))
    for r in (0, 1):
        assert CheckpointStore(str(dst / f"rank-{r:05d}")).latest() is None
    assert list(dst.rglob("*.tmp-*")), "the killed copy left no partial file behind"

    result = transfer_latest(str(src), str(dst))
    assert result is not None and result.step == 7
    assert result.skipped_bytes >= rows * WIDTH * 4
    assert result.bytes + result.skipped_bytes == total and result.bytes > 0
    assert not list(dst.rglob("*.tmp-*"))
    for r in (0, 1):
        step, model = restored(str(dst / f"rank-{r:05d}"), rows=rows)
        assert step == 7 and bit_identical(model, models[r])
    assert files_under(dst) == files_under(src)


@pytest.mark.parametrize("prune_source", [False, True])
def test_full_destination_is_a_transfer_error_and_source_untouched(
    tmp_path: Path, edge_fs: tuple[EdgeMemoryFS, str], prune_source: bool
) -> None:
    fs, root = edge_fs
    src = tmp_path / "KR"
    save(str(src), 3, seed=3, rows=256)
    before = files_under(src)
    fs.free_bytes = 300_000  # less than the 1 MiB tensors file
    with pytest.raises(TransferError) as caught:
        transfer_latest(str(src), root, dst_filesystem=fs, prune_source=prune_source)
    message = str(caught.value)
    assert isinstance(caught.value, ExecutorError)
    assert f"to {root}" in message and "No space left on device" in message
    assert "\n" not in message
    assert files_under(src) == before
    assert CheckpointStore(str(src)).verify(3).step == 3
    assert CheckpointStore(root, filesystem=fs).latest() is None
    assert not fs.exists(f"{root}/step-000000003/tensors.safetensors")  # no partial object

    fs.free_bytes = None  # space freed: the same call now succeeds
    result = transfer_latest(str(src), root, dst_filesystem=fs, prune_source=prune_source)
    assert result is not None and result.step == 3 and result.pruned_source is prune_source
    assert CheckpointStore(root, filesystem=fs).verify(3).step == 3


@pytest.mark.parametrize(
    "damaged",
    [("tensors.safetensors",), ("state.json",), ("tensors.safetensors", "MANIFEST.json")],
)
def test_destination_that_damages_data_is_caught_on_read_back(
    tmp_path: Path, edge_fs: tuple[EdgeMemoryFS, str], damaged: tuple[str, ...]
) -> None:
    fs, root = edge_fs
    src = tmp_path / "KR"
    save(str(src), 6, seed=6)
    before = files_under(src)
    fs.damaged_names = frozenset(damaged)  # sizes kept: only the sha256 read-back can tell
    with pytest.raises(CheckpointError, match=f"does not match its manifest after copying.*{root}"):
        transfer_latest(str(src), root, dst_filesystem=fs, prune_source=True)
    assert not fs.exists(f"{root}/step-000000006/MANIFEST.json")
    assert CheckpointStore(root, filesystem=fs).latest() is None
    assert files_under(src) == before  # verified source, never pruned


def test_missing_bucket_is_a_transfer_error(
    tmp_path: Path, s3: tuple[Any, dict[str, Any], str]
) -> None:
    _, options, _ = s3
    src = tmp_path / "KR"
    save(str(src), 1, seed=1)
    dst = "s3://no-such-bucket-xfer/job"
    with pytest.raises(TransferError, match=f"to {dst}"):
        transfer_latest(str(src), dst, dst_storage_options=options)
    assert CheckpointStore(str(src)).verify(1).step == 1


def test_corrupted_destination_file_is_rewritten(tmp_path: Path) -> None:
    src, dst = tmp_path / "KR", tmp_path / "FR"
    model = save(str(src), 4, seed=4, rows=64)
    first = transfer_latest(str(src), str(dst))
    assert first is not None
    tensors = dst / "step-000000004" / "tensors.safetensors"
    flip_byte(tensors)
    assert CheckpointStore(str(dst)).latest() is None
    result = transfer_latest(str(src), str(dst))
    assert result is not None and result.files == 2  # the tensors and the manifest
    manifest = (dst / "step-000000004" / "MANIFEST.json").stat().st_size
    assert result.bytes == tensors.stat().st_size + manifest
    assert result.skipped_bytes == (dst / "step-000000004" / "state.json").stat().st_size
    step, back = restored(str(dst), rows=64)
    assert step == 4 and bit_identical(back, model)


def test_truncated_destination_file_without_manifest_is_rewritten(tmp_path: Path) -> None:
    src, dst = tmp_path / "KR", tmp_path / "FR"
    model = save(str(src), 4, seed=4)
    (dst / "step-000000004").mkdir(parents=True)
    data = (src / "step-000000004" / "tensors.safetensors").read_bytes()
    (dst / "step-000000004" / "tensors.safetensors").write_bytes(data[: len(data) // 2])
    result = transfer_latest(str(src), str(dst))
    assert result is not None and result.files == 3 and result.skipped_bytes == 0
    step, back = restored(str(dst))
    assert step == 4 and bit_identical(back, model)


def test_corrupted_source_is_refused(tmp_path: Path) -> None:
    src, dst = tmp_path / "KR", tmp_path / "FR"
    save(str(src), 9, seed=9)
    flip_byte(src / "step-000000009" / "tensors.safetensors")
    with pytest.raises(CheckpointError, match=f"no complete checkpoint at {src}.*sha256"):
        transfer_latest(str(src), str(dst), prune_source=True)
    assert not list(dst.rglob("MANIFEST.json"))
    assert not list(dst.rglob("tensors.safetensors"))
    assert not (dst / "step-000000009").exists()
    assert (src / "step-000000009" / "MANIFEST.json").exists()  # refused, never pruned


def test_corrupted_newest_source_step_falls_back_to_the_previous(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src, dst = tmp_path / "KR", tmp_path / "FR"
    older = save(str(src), 1, seed=1)
    save(str(src), 2, seed=2)
    (src / "step-000000002" / "state.json").write_bytes(b"{}")
    result = transfer_latest(str(src), str(dst))
    assert result is not None and result.step == 1
    step, model = restored(str(dst))
    assert step == 1 and bit_identical(model, older)
    assert "step 2" in caplog.text and "damaged" in caplog.text
    assert sorted(p.name for p in dst.iterdir()) == ["step-000000001"]  # no debris of step 2


# ---------------------------------------------------------------------------- options
def test_bandwidth_limit_is_honoured(tmp_path: Path) -> None:
    src = tmp_path / "KR"
    save(str(src), 1, seed=1, rows=1024)  # 4 MiB
    total = step_size(str(src), 1)
    result = transfer_latest(
        str(src), str(tmp_path / "FR"), bandwidth_bytes_per_s=8e6, chunk_bytes=1 << 20
    )
    assert result is not None and result.bytes == total
    assert result.seconds >= total / 8e6 * 0.99 >= 0.45
    assert result.bytes_per_s <= 8e6


def test_prune_source_deletes_only_the_moved_step(tmp_path: Path) -> None:
    src, dst = tmp_path / "KR", tmp_path / "FR"
    save(str(src), 1, seed=1)
    newest = save(str(src), 2, seed=2)
    result = transfer_latest(str(src), str(dst), prune_source=True)
    assert result is not None and result.step == 2 and result.pruned_source
    assert not (src / "step-000000002").exists()
    assert CheckpointStore(str(src)).verify(1).step == 1
    step, model = restored(str(dst))
    assert step == 2 and bit_identical(model, newest)


def test_same_store_and_bad_options_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "KR"
    save(str(src), 1, seed=1)
    with pytest.raises(ConfigError, match="same store"):
        transfer_latest(str(src), str(tmp_path / "." / "KR"), prune_source=True)
    for bad in (0, -1.0, float("nan"), float("inf"), True):
        with pytest.raises(ConfigError, match="bandwidth_bytes_per_s"):
            transfer_latest(str(src), str(tmp_path / "FR"), bandwidth_bytes_per_s=bad)
    for chunk in (0, 1.5, True):
        with pytest.raises(ConfigError, match="chunk_bytes"):
            transfer_latest(str(src), str(tmp_path / "FR"), chunk_bytes=chunk)  # type: ignore[arg-type]
    assert CheckpointStore(str(src)).verify(1).step == 1
    assert json.loads((src / "step-000000001" / "MANIFEST.json").read_bytes())["step"] == 1
