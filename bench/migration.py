"""Migration benchmark: a whole move on the local executor against a raw copy of its bytes.

A job holding S bytes of parameters starts at a dirty site (KR) beside a clean one (FR) on a
SYNTHETIC trace and the SIMULATED GPU; the controller suspends and moves it. Timed, wall clock:

* ``migration_s``: from the source worker starting its checkpoint to the destination worker
  finishing its first step: checkpoint (write + fsync + sha256), the worker's exit, the
  supervisor's transfer (copy, read-back sha256 at the destination, fsync), the new worker's
  start (Python + torch import), restore (read + verify) and one step;
* ``raw_copy_s``: ``shutil.copyfile`` of a file of the same S bytes + fsync, on the same disk,
  in the same run (the least any move of those bytes costs);
* ``overhead_ratio_<size>`` = migration_s / raw_copy_s (medians of ``ROUNDS``), and the parts
  (``checkpoint_s``, ``transfer_s``, ``restart_s``) that explain it.

On the ``ray`` executor (where Ray is installed; run it in a network namespace with only ``lo``:
``bash .ci/isolated python bench/run.py migration``; with ``CAFTM_BENCH_ONLY_RAY=1`` only these are
measured, the local figures on file kept), a local cluster of two nodes, sites KR (head)
and FR (worker), is started and stopped by the benchmark:

* ``ray_leg_start_s``: a leg's submission (the supervisor records it, then submits the Ray job) to
  its first training step on the FR node (Ray scheduling, the worker's start, one step), median of
  ``RAY_LEG_ROUNDS``;
* ``ray_overhead_ratio_1GB``: the whole 1 GB migration above, KR → FR on Ray, over a raw copy of
  the same bytes (medians of ``ROUNDS``), with its parts as for the local executor.

Everything runs under the system temp directory and is deleted afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from caftm.jobs.spec import load_job
from caftm.jobs.supervisor import Supervisor
from caftm.ledger import JobBook, Ledger

HERE = Path(__file__).resolve().parent
SIZES_MB = {"100MB": 100, "1GB": 1000}
ROUNDS = 3
RAY_LEG_ROUNDS = 5
START = "2026-03-01T00:00:00+00:00"


def _job(tmp: Path, mb: float, job: dict[str, Any] | None = None, **extra: Any) -> Path:
    trace = tmp / "trace.csv"
    trace.write_text(
        "time,KR,FR\n"
        + "".join(f"2026-03-{1 + h // 24:02d}T{h % 24:02d}:00:00+00:00,500,50\n" for h in range(72))
    )
    marks = tmp / "marks"
    marks.mkdir()
    config = tmp / "job.yaml"
    data: dict[str, Any] = {
        "job": {
            "name": "bench",
            "command": [
                sys.executable,
                str(HERE / "_migration_worker.py"),
                "--config",
                str(config),
                "--mb",
                str(mb),
                "--marks",
                str(marks),
            ],
            "workdir": str(tmp / "work"),
            "clock_speed": 60.0,
            "clock_start": START,
            **(job or {}),
        },
        "sites": ["KR", "FR"],
        "total_steps": 40,
        "threshold": {"mode": "absolute", "value_g_per_kwh": 400},
        "policy": {"name": "greedy-cleanest", "min_dwell_s": 0},
        "checkpoint": {"keep_last": 1},
        "gpu": {"steps_per_probe": 2, "max_probes": 2, "window_steps": 5},
        "signals": {"source": "trace", "trace_path": str(trace)},
        "ledger": {"path": str(tmp / "ledger.sqlite")},
    }
    data.update(extra)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def _migrate_once(mb: float, job: dict[str, Any] | None = None) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="caftm-bench-migration-") as folder:
        tmp = Path(folder)
        config = _job(tmp, mb, job)
        spec = load_job(config)
        supervisor = Supervisor(spec)
        try:
            job = supervisor.run()
        finally:
            supervisor.close()
        assert job.status.value == "succeeded" and job.moves == 1, (job.status, job.message)
        marks = tmp / "marks"
        saves = sorted(marks.glob("save-*"), key=lambda p: int(p.name.split("-")[1]))
        save_start = float(saves[0].read_text())
        first_step = float((marks / "first-step").read_text())
        with Ledger(spec.ledger_path) as ledger:
            book = JobBook(ledger)
            transfer = next(t for t in book.transfers("bench") if t.status == "done")
            legs = book.legs("bench")
        assert transfer.seconds is not None and legs[0].ended_at is not None
        transfer_s = transfer.seconds
        moved_bytes = transfer.bytes or 0
        return {
            "migration_s": first_step - save_start,
            "transfer_s": transfer_s,
            "checkpoint_s": legs[0].ended_at.timestamp() - save_start,
            "restart_s": first_step - legs[1].started_at.timestamp(),
            "bytes": float(moved_bytes),
        }


def _raw_copy_s(size_bytes: int) -> float:
    with tempfile.TemporaryDirectory(prefix="caftm-bench-copy-") as folder:
        src, dst = Path(folder) / "src", Path(folder) / "dst"
        with open(src, "wb") as fh:
            block = os.urandom(8 * 2**20)
            for _ in range(max(1, size_bytes // len(block))):
                fh.write(block)
            fh.flush()
            os.fsync(fh.fileno())
        started = time.perf_counter()
        shutil.copyfile(src, dst)
        with open(dst, "rb+") as fh:
            os.fsync(fh.fileno())
        return time.perf_counter() - started


Result = dict[str, float | int | str | bool]


def _measure(result: Result, label: str, mb: float, *, prefix: str = "",
             job: dict[str, Any] | None = None) -> None:  # fmt: skip
    moves, copies = [], []
    for _ in range(ROUNDS):  # alternate, so both sides see the same machine state
        moves.append(_migrate_once(mb, job))
        copies.append(_raw_copy_s(int(moves[-1]["bytes"])))
    median = {k: statistics.median(m[k] for m in moves) for k in moves[0]}
    raw = statistics.median(copies)
    result[f"{prefix}overhead_ratio_{label}"] = round(median["migration_s"] / raw, 3)
    result[f"{prefix}migration_s_{label}"] = round(median["migration_s"], 3)
    result[f"{prefix}raw_copy_s_{label}"] = round(raw, 3)
    for part in ("checkpoint_s", "transfer_s", "restart_s"):
        result[f"{prefix}{part}_{label}"] = round(median[part], 3)
    result[f"{prefix}bytes_{label}"] = int(median["bytes"])


def _ray_leg_start_once(job: dict[str, Any]) -> float:
    """A one-site job at FR: its leg's submission to its first step (s)."""
    with tempfile.TemporaryDirectory(prefix="caftm-bench-rayleg-") as folder:
        tmp = Path(folder)
        config = _job(tmp, 1.0, job, sites=["FR"], total_steps=3,
                      policy={"name": "carbon-agnostic"})  # fmt: skip
        spec = load_job(config)
        supervisor = Supervisor(spec)
        try:
            record = supervisor.run()
        finally:
            supervisor.close()
        assert record.status.value == "succeeded", (record.status, record.message)
        first_step = float((tmp / "marks" / "leg-first-step-0").read_text())
        with Ledger(spec.ledger_path) as ledger:
            (leg,) = JobBook(ledger).legs("bench")
        assert leg.node, "the Ray leg has no node"
        return first_step - leg.started_at.timestamp()


def _ray(result: Result) -> None:
    """The Ray figures, on a local two-node cluster (KR head, FR worker)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        result["ray_skipped"] = "Ray is not installed (pip install 'caftm[ray]')"
        return
    sys.path.insert(0, str(HERE.parent))
    from tests.jobs.ray_cluster import RayCluster

    cluster = RayCluster(("KR", "FR"))
    try:
        cluster.start()
        job = {"executor": "ray", "ray": {"address": cluster.address}}
        _ray_leg_start_once(job)  # the first leg on a fresh node also sets up Ray's worker pool
        starts = [_ray_leg_start_once(job) for _ in range(RAY_LEG_ROUNDS)]
        result["ray_leg_start_s"] = round(statistics.median(starts), 3)
        result["ray_leg_start_s_max"] = round(max(starts), 3)
        result["ray_leg_rounds"] = RAY_LEG_ROUNDS
        _measure(result, "1GB", SIZES_MB["1GB"], prefix="ray_", job=job)
    finally:
        cluster.stop()


def run() -> Result:
    result: Result = {"simulated_gpu": True, "rounds": ROUNDS}
    result["load_average_at_start"] = round(os.getloadavg()[0], 2)  # these figures are wall time
    # CAFTM_BENCH_ONLY_RAY=1: measure the Ray figures only, keeping the local ones on file
    only_ray = os.environ.get("CAFTM_BENCH_ONLY_RAY") == "1"
    on_file = HERE / "results" / "migration.json"
    if only_ray:
        kept = json.loads(on_file.read_text()) if on_file.exists() else {}
        result.update({k: v for k, v in kept.items() if not k.startswith("ray_")})
    else:
        for label, mb in SIZES_MB.items():
            _measure(result, label, mb)
    _ray(result)
    return result
