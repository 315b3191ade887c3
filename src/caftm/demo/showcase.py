"""The demo's jobs, run through the job supervisor and compared with carbon-agnostic runs.

Two small carbon-aware jobs run on the embedded (SYNTHETIC) profiles with an accelerated clock
(one wall second of training or pause = half a grid hour by default; process start-ups and
moves take their wall time, see :mod:`caftm.clock`) and the SIMULATED GPU, each beside its
carbon-agnostic twin:

- ``move``: starts in KR among KR, JP-TK, DE, FR and CA-ON; the shipped planner (the policy a
  job with no ``policy:`` gets) sees cleaner sites, so after profiling the GPU it checkpoints and
  moves to one;
- ``wait``: runs only in DE under a deadline; DE is dirty at the start and clean a few hours
  later, so the planner pauses until then and runs the GPU slower in the slack.

The twins (policy ``carbon-agnostic``) stay where they start at default clocks. All four run at
once, each in its own process per leg, and the final parameters of each job are compared with
its twin's bit for bit.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from caftm.errors import CaftmError, ExecutorError
from caftm.jobs.spec import JobSpec, load_job
from caftm.jobs.supervisor import Supervisor
from caftm.jobs.view import JobView
from caftm.ledger import JobBook, JobRecord, JobStatus, Ledger
from caftm.ledger.feed import Feed, Scope
from caftm.sim.policy_specs import DEFAULT_POLICY

__all__ = ["DEMO_SITES", "DEMO_SPEED", "DemoResult", "run_showcase"]

DEMO_SITES = ("KR", "JP-TK", "DE", "FR", "CA-ON")
#: A June afternoon: DE is dirty from 15:00 until about 06:00 the next day (embedded profiles).
DEMO_START = datetime(2026, 6, 15, 15, tzinfo=UTC)
DEMO_STEPS = 1500
#: Grid seconds per wall second of training or pause (1800: a wall second is half a grid hour;
#: a busy machine trains slower, and so for more grid hours: this leaves the pausing job room)
DEMO_SPEED = 1800.0
#: The pausing job's deadline: the end of DE's third clean morning, however slow training is.
DEMO_DEADLINE = DEMO_START + timedelta(hours=72)

UpdateFn = Callable[[str, JobView], None]


@dataclass(frozen=True)
class DemoResult:
    """The comparison ``caftm demo --json`` writes (carbon g, energy J, wall s, JCT h).

    ``pause_saving_pct``: carbon the pausing job (``wait``) saved against its twin, %;
    ``deadline_met``: it completed by its deadline on the job's clock.
    """

    caftm_carbon_g: float
    agnostic_carbon_g: float
    caftm_energy_j: float
    agnostic_energy_j: float
    moves: int
    pauses: int
    clock_changes: int
    params_identical: bool
    wall_s: float
    caftm_jct_h: float
    agnostic_jct_h: float
    pause_saving_pct: float
    deadline_met: bool
    jobs: dict[str, dict[str, Any]]
    timeline_png: str | None
    simulated_gpu: bool = True
    synthetic_intensities: bool = True

    def to_json(self) -> dict[str, Any]:
        """The JSON form (flat keys first, per-job details under ``jobs``)."""
        return asdict(self)


def _job_dict(name: str, sites: list[str], policy: str, *, deadline: datetime | None,
              speed: float) -> dict[str, Any]:  # fmt: skip
    """One job file's content; its paths are relative to the file's folder (where the worker runs,
    and what :func:`~caftm.jobs.spec.load_job` resolves them against). It sets only what its
    policy reads: no θ (the shipped planner plans over forecasts, the twins never stop)."""
    policy_section: dict[str, Any] = {"name": policy, "min_dwell_s": 0}
    if deadline is not None:
        policy_section["deadline"] = deadline.isoformat()
    return {
        "job": {
            "name": name,
            "command": [
                sys.executable,
                "-m",
                "caftm.demo.worker",
                "--config",
                f"{name}.yaml",
                "--checkpoint-every",
                "250",
            ],
            "workdir": "jobs",
            "clock_speed": speed,
            "clock_start": DEMO_START.isoformat(),
            "backoff_s": 0.5,
            "grace_s": 20,
        },
        "sites": sites,
        "total_steps": DEMO_STEPS,
        "policy": policy_section,
        # a checkpoint of this model is a few kB: moving it takes seconds, not minutes
        "migration": {
            "checkpoint_s": 2,
            "transfer_s": 5,
            "restart_s": 5,
            "margin_g": 0.01,
            "pause_recheck_s": 1800,
        },
        "gpu": {"steps_per_probe": 10, "max_probes": 6, "window_steps": 50},
        "signals": {"source": "profile", "refresh_interval_s": 1800},
        "ledger": {"path": "ledger.sqlite", "run_name": name},
    }


def write_jobs(workdir: Path, *, speed: float = DEMO_SPEED) -> dict[str, Path]:
    """Write the four job files into ``workdir``; returns name → path."""
    workdir.mkdir(parents=True, exist_ok=True)
    deadline = DEMO_DEADLINE
    plans = {
        "move": (list(DEMO_SITES), DEFAULT_POLICY, deadline),
        "move-agnostic": (list(DEMO_SITES), "carbon-agnostic", deadline),
        "wait": (["DE"], DEFAULT_POLICY, deadline),
        "wait-agnostic": (["DE"], "carbon-agnostic", deadline),
    }
    paths = {}
    for name, (sites, policy, job_deadline) in plans.items():
        data = _job_dict(name, sites, policy, deadline=job_deadline, speed=speed)
        path = workdir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        paths[name] = path
    return paths


def run_showcase(
    workdir: Path, *, speed: float = DEMO_SPEED, on_update: UpdateFn | None = None,
    timeline: bool = True,
) -> DemoResult:  # fmt: skip
    """Run the demo's four jobs at once and compare them.

    Raises:
        ExecutorError: a job failed (its message names why).
    """
    paths = write_jobs(workdir, speed=speed)
    specs = {name: load_job(path) for name, path in paths.items()}
    started = time.perf_counter()
    records = _run_all(specs, on_update)
    wall_s = time.perf_counter() - started
    failed = [r for r in records.values() if r.status is not JobStatus.SUCCEEDED]
    if failed:
        raise ExecutorError(f"demo job {failed[0].name} {failed[0].status.value}: "
                            f"{failed[0].message}")  # fmt: skip
    with Ledger(specs["move"].ledger_path) as ledger:
        book = JobBook(ledger)
        jobs = {name: _job_summary(book, specs[name]) for name in specs}
        png = None
        if timeline:
            from caftm.demo.figure import plot_demo

            timeline_path = specs["move"].base_dir / "timeline.png"  # absolute, as the spec's
            pairs = [(name, f"{name}-agnostic") for name in ("move", "wait")]
            png = str(plot_demo(book, pairs, timeline_path))
    identical = all(
        _final_params_equal(specs[name], specs[f"{name}-agnostic"], records[name],
                            records[f"{name}-agnostic"])
        for name in ("move", "wait")
    )  # fmt: skip
    aware, agnostic = ("move", "wait"), ("move-agnostic", "wait-agnostic")
    wait, wait_twin = jobs["wait"], jobs["wait-agnostic"]
    pause_saving = 1 - wait["carbon_g"] / wait_twin["carbon_g"] if wait_twin["carbon_g"] else 0.0
    return DemoResult(
        caftm_carbon_g=sum(jobs[n]["carbon_g"] for n in aware),
        agnostic_carbon_g=sum(jobs[n]["carbon_g"] for n in agnostic),
        caftm_energy_j=sum(jobs[n]["energy_j"] for n in aware),
        agnostic_energy_j=sum(jobs[n]["energy_j"] for n in agnostic),
        moves=sum(jobs[n]["moves"] for n in aware),
        pauses=sum(jobs[n]["pauses"] for n in aware),
        clock_changes=sum(jobs[n]["clock_changes"] for n in aware),
        params_identical=identical,
        wall_s=round(wall_s, 2),
        caftm_jct_h=max(jobs[n]["jct_h"] for n in aware),
        agnostic_jct_h=max(jobs[n]["jct_h"] for n in agnostic),
        pause_saving_pct=round(100 * pause_saving, 2),
        deadline_met=wait["deadline_met"],
        jobs=jobs,
        timeline_png=png,
    )


def _run_all(specs: dict[str, JobSpec], on_update: UpdateFn | None) -> dict[str, JobRecord]:
    """Run every job's supervisor on its own thread; returns their final records."""
    records: dict[str, JobRecord] = {}
    errors: list[BaseException] = []

    def supervise(name: str, spec: JobSpec) -> None:
        hook = None if on_update is None else (lambda view: on_update(name, view))
        supervisor = Supervisor(spec, on_update=hook)
        try:
            records[name] = supervisor.run()
        except BaseException as e:  # reported below, on the caller's thread
            errors.append(e)
        finally:
            supervisor.close()

    threads = [
        threading.Thread(target=supervise, args=(name, spec), name=f"caftm-demo-{name}")
        for name, spec in specs.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        error = errors[0]
        if isinstance(error, CaftmError):
            raise error
        raise ExecutorError(f"a demo job's supervisor failed: {error!r}") from error
    return records


def _job_summary(book: JobBook, spec: JobSpec) -> dict[str, Any]:
    """Carbon, energy, moves, pauses, clock changes and completion time of one job."""
    job = book.get(spec.name)
    totals = book.totals(job.name)
    windows = sorted(Feed(book.ledger).windows(Scope.of_job(job.name)),
                     key=lambda w: (w.time, w.id))  # fmt: skip
    times = [w.time for w in windows]
    jct_h = (max(times) - DEMO_START).total_seconds() / 3600 if times else 0.0
    deadline = spec.controller.policy.deadline
    changes, last = 0, None
    for window in windows:
        if window.setting is not None and window.setting != last:
            changes += 1
        last = window.setting
    return {
        "carbon_g": totals.carbon_g or 0.0,
        "energy_j": totals.energy_j or 0.0,
        "moves": job.moves,
        "pauses": job.pauses,
        "clock_changes": changes,
        "steps": totals.steps,
        "jct_h": round(jct_h, 2),
        "completed_at": max(times).isoformat() if times else None,
        "deadline": None if deadline is None else deadline.isoformat(),
        "deadline_met": bool(times) and (deadline is None or max(times) <= deadline),
        "sites": [leg.site for leg in book.legs(job.name)],
        "legs": job.leg,
    }


def _final_params_equal(a: JobSpec, b: JobSpec, job_a: JobRecord, job_b: JobRecord) -> bool:
    """Whether two finished jobs' final checkpoints hold bit-identical model parameters."""
    import torch

    from caftm.checkpoint import CheckpointStore

    trees = []
    for spec, job in ((a, job_a), (b, job_b)):
        store = CheckpointStore(spec.store_url(job.site), keep_last=None)
        loaded = store.load_latest()
        store.close()
        if loaded is None:
            return False
        info, tree = loaded
        if info.step != DEMO_STEPS:
            return False
        trees.append(tree["model"])
    left, right = trees
    return left.keys() == right.keys() and all(
        torch.equal(left[k], right[k]) and left[k].dtype == right[k].dtype for k in left
    )
