"""Checkpoint benchmark: save throughput vs a plain write, async stall, resume time.

* ``save_throughput_ratio``: time of a plain sequential write (+ fsync) of a state's tensor
  bytes / time of ``CheckpointStore.save`` of that state (safetensors + JSON + sha256 + manifest,
  every file fsynced), same disk, measured alternately, medians. 1.0 = as fast as a raw write.
  Each side deletes its output after the timed part (pruning old checkpoints is not writing).
* ``async_stall_ratio``: time ``save_async`` blocks the training thread (the snapshot) / time
  of a synchronous save of the same state.
* ``resume_s``: ``restore_latest`` of a 1 GiB checkpoint into a fresh model: list, read,
  verify sha256, parse, ``load_state_dict`` (page cache warm: the file was just written).
  ``resume_latest_then_restore_s`` is the two-call form ``restore(state, latest())``, which
  hashes the files twice (once to choose, once on the bytes it parses).

Runs on the local disk under the system temp directory; everything is deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from caftm.checkpoint import CheckpointStore, TrainingState

MIB = 2**20
SAVE_STATE_BYTES = 1024 * MIB  # the same 1 GiB state as the resume figure
RESUME_STATE_BYTES = 1024 * MIB
TENSOR_BYTES = 64 * MIB
ROUNDS = 7


class Blob(torch.nn.Module):
    """A module holding ``total_bytes`` of float32 parameters in 64 MiB tensors."""

    def __init__(self, total_bytes: int, *, fill: float | None = None) -> None:
        super().__init__()
        count = total_bytes // TENSOR_BYTES
        self.chunks = torch.nn.ParameterList(
            torch.nn.Parameter(
                torch.randn(TENSOR_BYTES // 4)
                if fill is None
                else torch.full((TENSOR_BYTES // 4,), fill),
                requires_grad=False,
            )
            for _ in range(count)
        )


def plain_write(path: Path, model: torch.nn.Module) -> float:
    """Write the parameters' bytes sequentially to one file and fsync it; returns seconds."""
    started = time.perf_counter()
    with open(path, "wb") as f:
        for tensor in model.state_dict().values():
            f.write(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
        f.flush()
        os.fsync(f.fileno())
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def timed_save(store: CheckpointStore, state: TrainingState, step: int) -> float:
    """One synchronous save; the checkpoint is deleted afterwards, outside the timing."""
    started = time.perf_counter()
    info = store.save(state, step=step)
    elapsed = time.perf_counter() - started
    shutil.rmtree(info.path)
    return elapsed


def measure_save(work: Path) -> dict[str, float]:
    state = TrainingState(model=Blob(SAVE_STATE_BYTES), rng=False)
    store = CheckpointStore(work / "save", keep_last=None)
    timed_save(store, state, 0)  # warm-up: page allocation, imports
    plain_write(work / "plain.bin", state.model)  # type: ignore[arg-type]
    plain_s, save_s, stall_s, sync_s = [], [], [], []
    for round_index in range(ROUNDS):
        plain_s.append(plain_write(work / "plain.bin", state.model))  # type: ignore[arg-type]
        save_s.append(timed_save(store, state, 2 * round_index + 1))
    for round_index in range(3):
        sync_s.append(timed_save(store, state, 100 + 2 * round_index))
        started = time.perf_counter()
        handle = store.save_async(state, step=101 + 2 * round_index)
        stall_s.append(time.perf_counter() - started)
        shutil.rmtree(handle.wait().path)
    store.close()
    shutil.rmtree(work / "save")
    plain, save = statistics.median(plain_s), statistics.median(save_s)
    return {
        "save_state_mib": SAVE_STATE_BYTES / MIB,
        "plain_write_s_median": round(plain, 4),
        "save_s_median": round(save, 4),
        "plain_write_gb_per_s": round(SAVE_STATE_BYTES / plain / 1e9, 3),
        "save_gb_per_s": round(SAVE_STATE_BYTES / save / 1e9, 3),
        "save_throughput_ratio": round(plain / save, 3),
        "async_stall_s_median": round(statistics.median(stall_s), 4),
        "sync_save_s_median": round(statistics.median(sync_s), 4),
        "async_stall_ratio": round(statistics.median(stall_s) / statistics.median(sync_s), 3),
    }


def measure_resume(work: Path) -> dict[str, float]:
    source = TrainingState(model=Blob(RESUME_STATE_BYTES))
    store = CheckpointStore(work / "resume", keep_last=1)
    store.save(source, step=1)
    del source
    target = TrainingState(model=Blob(RESUME_STATE_BYTES, fill=0.0))
    single, double = [], []
    for _ in range(3):
        started = time.perf_counter()
        info = store.restore_latest(target)
        single.append(time.perf_counter() - started)
        assert info is not None and info.step == 1
        started = time.perf_counter()
        latest = store.latest()
        assert latest is not None
        store.restore(target, latest)
        double.append(time.perf_counter() - started)
    shutil.rmtree(work / "resume")
    return {
        "resume_state_mib": RESUME_STATE_BYTES / MIB,
        "resume_s": round(statistics.median(single), 3),
        "resume_latest_then_restore_s": round(statistics.median(double), 3),
    }


def run() -> dict[str, float | int | str | bool]:
    """Run all measurements in a temporary directory on the local disk; deletes it after."""
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="caftm-bench-checkpoint-"))
    try:
        result: dict[str, float | int | str | bool] = {}
        result.update(measure_save(work))
        result.update(measure_resume(work))
        result["disk"] = f"local disk under {tempfile.gettempdir()} (fsync on both sides)"
        result["torch_threads"] = torch.get_num_threads()
        result["cpu_count"] = os.cpu_count() or 0
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
