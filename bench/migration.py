"""Migration benchmark: the downtime of a move on the local executor against a raw copy.

A job holding S bytes of parameters starts at a dirty site (KR) beside a clean one (FR) on a
SYNTHETIC trace and the SIMULATED GPU; the controller suspends and moves it, with the shipped
defaults (``direct_moves``: the worker writes its last checkpoint straight into FR's store;
``standby_workers``: FR's worker starts while that checkpoint is written and waits for the go).
Timed, wall clock:

* ``downtime_s_<size>``: from the source worker's last step (its checkpoint starts) to the
  destination worker's first step after its restore: checkpoint (write + fsync, sha256 of each
  block while it is written), the worker's exit, the supervisor's check and go, the restore
  (one read, verified) and one step. The destination's interpreter, imports and model
  construction overlap the checkpoint;
* ``raw_copy_s_<size>``: ``shutil.copyfile`` of a file of the same S bytes + fsync, on the same
  disk, in the same run (the least any move of those bytes costs);
* ``downtime_ratio_<size>`` = downtime / raw copy (medians of ``ROUNDS``), and the parts
  (``checkpoint_s``: last step → the source leg's end, of which ``checkpoint_write_s`` the
  checkpoint's write, the rest the worker's exit; ``restart_s``: the destination leg's
  recorded start, i.e. its go → its first step; ``standby_ready_before_go_s``: how long the
  destination's worker had its model built before its go — negative when it was still
  starting, so the go waited for it); the downtime's phases, one after the other:
  ``checkpoint_write_s``, ``worker_close_s`` (the source's session and ledger closed, its outcome
  written), ``worker_exit_s`` (its interpreter's exit, until the supervisor recorded the leg's
  end), ``supervisor_go_s`` (the move checked and recorded, the go given), ``standby_wait_s``
  (the go waiting for the standby's model), ``restore_s`` (what is left of the restore after
  the go: read once, verified, loaded) and ``first_step_s``. CPU seconds (all threads of the
  worker, whatever else the machine runs):
  ``checkpoint_write_cpu_s`` (the source's write, sha256 included), ``standby_start_cpu_s``
  (the destination's interpreter, imports and model, overlapped) and ``restore_cpu_s`` (its
  read, verification and load, partly overlapped: it starts as soon as the checkpoint is
  complete);
* ``transfer_s_1GB`` and ``transfer_ratio_1GB``: ``transfer_latest`` of the 1 GB checkpoint
  between two local stores (the supervisor's copy when a worker cannot write into the
  destination: read, sha256 and write in one pass, fsync) over a raw copy of the same bytes.

On the ``ray`` executor (where Ray is installed; run it in a network namespace with only ``lo``:
``bash .ci/isolated python bench/run.py migration``; with ``CAFTM_BENCH_ONLY_RAY=1`` only these are
measured, the local figures on file kept), a local cluster of two nodes, sites KR (head)
and FR (worker), is started and stopped by the benchmark:

* ``ray_downtime_s_1GB`` and ``ray_downtime_ratio_1GB``: the 1 GB move above, KR → FR on Ray;
* ``ray_leg_start_s``: in those moves, the FR leg's recorded start (the supervisor's go to its
  standby worker, which Ray started during the checkpoint) to its first step (median);
* ``ray_leg_cold_start_s``: a one-site job's first leg, submission to first step (Ray
  scheduling, the worker's start, one step; nothing to overlap it with), median of
  ``RAY_LEG_ROUNDS``.

The machine's 1-minute load average is recorded at the start and the end (these are wall-clock
figures; on a shared machine they vary with the load). Everything runs under the system temp
directory and is deleted afterwards.
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
        with Supervisor(spec) as supervisor:
            job = supervisor.run()
        assert job.status.value == "succeeded" and job.moves == 1, (job.status, job.message)
        marks = tmp / "marks"
        saves = sorted(marks.glob("save-*"), key=lambda p: int(p.name.split("-")[1]))
        save_start = float(saves[0].read_text())
        saved = float((marks / saves[0].name.replace("save-", "saved-")).read_text())
        first_step = float((marks / "first-step").read_text())
        with Ledger(spec.ledger_path) as ledger:
            book = JobBook(ledger)
            transfer = next(t for t in book.transfers("bench") if t.status == "done")
            legs = book.legs("bench")
        assert legs[0].ended_at is not None
        go = legs[1].started_at.timestamp()
        built = max(float(p.read_text()) for p in marks.glob("built-*"))  # the destination's
        left = float((marks / "left-0").read_text())
        (restored_mark,) = marks.glob("restored-*")
        restored = float(restored_mark.read_text())
        pid = restored_mark.name.removeprefix("restored-")
        cpu_built = float((marks / f"cpu-built-{pid}").read_text())
        return {
            "checkpoint_write_cpu_s": float((marks / f"cpu-{saves[0].name}").read_text()),
            "standby_start_cpu_s": cpu_built,
            "restore_cpu_s": float((marks / f"cpu-restored-{pid}").read_text()) - cpu_built,
            "standby_ready_before_go_s": go - built,
            "worker_close_s": left - saved,
            "worker_exit_s": legs[0].ended_at.timestamp() - left,
            "supervisor_go_s": go - legs[0].ended_at.timestamp(),
            "standby_wait_s": max(0.0, built - go),
            "restore_s": restored - max(go, built),
            "first_step_s": first_step - restored,
            "downtime_s": first_step - save_start,
            "checkpoint_s": legs[0].ended_at.timestamp() - save_start,
            "checkpoint_write_s": saved - save_start,
            "restart_s": first_step - legs[1].started_at.timestamp(),
            "supervisor_transfer_s": transfer.seconds or 0.0,
            "direct": float(transfer.message == "written by the worker"),
            "standby": float((tmp / "work" / "bench" / "leg-0002" / "standby.json").exists()),
            "bytes": float(transfer.bytes or 0),
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


def _transfer_once(mb: float) -> tuple[float, float, int]:
    """(transfer_latest of a real checkpoint of ``mb`` MB, raw copy of its bytes, its bytes)."""
    sys.path.insert(0, str(HERE))
    from _migration_worker import Blob
    from caftm.checkpoint import CheckpointStore, TrainingState, transfer_latest

    with tempfile.TemporaryDirectory(prefix="caftm-bench-transfer-") as folder:
        src, dst = Path(folder) / "KR", Path(folder) / "FR"
        with CheckpointStore(str(src)) as store:
            info = store.save(TrainingState(model=Blob(int(mb * 1e6)), rng=False), step=1)
        started = time.perf_counter()
        result = transfer_latest(str(src), str(dst))
        seconds = time.perf_counter() - started
        assert result is not None and result.step == 1
    return seconds, _raw_copy_s(info.size_bytes), info.size_bytes


Result = dict[str, float | int | str | bool]


def _measure(result: Result, label: str, mb: float, *, prefix: str = "",
             job: dict[str, Any] | None = None) -> None:  # fmt: skip
    moves, copies = [], []
    for _ in range(ROUNDS):  # alternate, so both sides see the same machine state
        moves.append(_migrate_once(mb, job))
        copies.append(_raw_copy_s(int(moves[-1]["bytes"])))
    median = {k: statistics.median(m[k] for m in moves) for k in moves[0]}
    raw = statistics.median(copies)
    result[f"{prefix}downtime_ratio_{label}"] = round(median["downtime_s"] / raw, 3)
    result[f"{prefix}downtime_s_{label}"] = round(median["downtime_s"], 3)
    result[f"{prefix}downtime_s_max_{label}"] = round(max(m["downtime_s"] for m in moves), 3)
    result[f"{prefix}raw_copy_s_{label}"] = round(raw, 3)
    parts = ("checkpoint_s", "checkpoint_write_s", "restart_s", "supervisor_transfer_s",
             "standby_ready_before_go_s", "worker_close_s", "worker_exit_s", "supervisor_go_s",
             "standby_wait_s", "restore_s", "first_step_s", "checkpoint_write_cpu_s",
             "standby_start_cpu_s", "restore_cpu_s")  # fmt: skip
    for part in parts:
        result[f"{prefix}{part}_{label}"] = round(median[part], 3)
    result[f"{prefix}bytes_{label}"] = int(median["bytes"])
    result[f"{prefix}direct_writes_{label}"] = int(sum(m["direct"] for m in moves))
    result[f"{prefix}standby_starts_{label}"] = int(sum(m["standby"] for m in moves))
    if prefix == "ray_":
        result["ray_leg_start_s"] = round(median["restart_s"], 3)


def _measure_transfer(result: Result) -> None:
    runs = [_transfer_once(SIZES_MB["1GB"]) for _ in range(ROUNDS)]
    transfer = statistics.median(r[0] for r in runs)
    raw = statistics.median(r[1] for r in runs)
    result["transfer_s_1GB"] = round(transfer, 3)
    result["transfer_raw_copy_s_1GB"] = round(raw, 3)
    result["transfer_ratio_1GB"] = round(transfer / raw, 3)


def _ray_leg_start_once(job: dict[str, Any]) -> float:
    """A one-site job at FR: its leg's submission to its first step (s)."""
    with tempfile.TemporaryDirectory(prefix="caftm-bench-rayleg-") as folder:
        tmp = Path(folder)
        config = _job(tmp, 1.0, job, sites=["FR"], total_steps=3,
                      policy={"name": "carbon-agnostic"})  # fmt: skip
        spec = load_job(config)
        with Supervisor(spec) as supervisor:
            record = supervisor.run()
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
        result["ray_leg_cold_start_s"] = round(statistics.median(starts), 3)
        result["ray_leg_cold_start_s_max"] = round(max(starts), 3)
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
        # CAFTM_BENCH_SIZES=1GB: measure only these sizes
        wanted = os.environ.get("CAFTM_BENCH_SIZES", ",".join(SIZES_MB)).split(",")
        for label, mb in SIZES_MB.items():
            if label in wanted:
                _measure(result, label, mb)
        _measure_transfer(result)
    _ray(result)
    result["load_average_at_end"] = round(os.getloadavg()[0], 2)
    result["cpu_count"] = os.cpu_count() or 0
    return result
