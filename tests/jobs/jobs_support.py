"""Shared pieces of the supervisor tests: job files on a synthetic rotating trace, final params.

The trace (SYNTHETIC, written by the test) makes one site clean at a time, rotating every
``period_h`` hours, so a carbon-aware job under an accelerated clock keeps moving.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import torch
import yaml

from caftm.checkpoint import CheckpointStore
from caftm.jobs.spec import JobSpec, load_job
from caftm.ledger import JobBook, Ledger

START = datetime(2026, 3, 1, tzinfo=UTC)
SITES = ("KR", "FR", "DE")
STEPS = 600
#: the clean site rotates every PERIOD_H grid hours = PERIOD_H * 3600 / SPEED wall seconds (8 s):
#: longer than a worker takes to start, so a move lands on a site that is still clean
PERIOD_H = 4
SPEED = 1800.0
#: each step takes at least this long (s): 600 steps (18 s) and the legs' starts span 3 rotations
PACE_S = 0.03
HERE = Path(__file__).parent


def write_trace(
    path: Path, *, sites: tuple[str, ...] = SITES, period_h: int = PERIOD_H, hours: int = 24 * 10
) -> Path:
    """A wide CSV: every ``period_h`` hours the next site is clean (50 g), the others 500 g."""
    lines = ["time," + ",".join(sites)]
    for h in range(hours):
        clean = (h // period_h + 1) % len(sites)  # the first site is dirty from the start
        values = ["50" if i == clean else "500" for i in range(len(sites))]
        lines.append(f"{(START + timedelta(hours=h)).isoformat()}," + ",".join(values))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_job(
    tmp: Path,
    name: str = "job",
    *,
    policy: str = "greedy-cleanest",
    sites: tuple[str, ...] = SITES,
    steps: int = STEPS,
    speed: float = SPEED,
    every: int = 50,
    command: list[str] | None = None,
    job: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """A job file in ``tmp`` training the demo CNN on the rotating trace."""
    trace = tmp / "trace.csv"
    if not trace.exists():
        write_trace(trace)
    config = tmp / f"{name}.yaml"
    worker = command or [
        sys.executable,
        str(HERE / "paced_worker.py"),
        "--config",
        str(config),
        "--checkpoint-every",
        str(every),
    ]
    data: dict[str, Any] = {
        "job": {
            "name": name,
            "command": worker,
            "workdir": str(tmp / "work"),
            "clock_speed": speed,
            "clock_start": START.isoformat(),
            "backoff_s": 0.1,
            "grace_s": 30,
            **(job or {}),
            "env": {"PACE_S": str(PACE_S), **(job or {}).get("env", {})},
        },
        "sites": list(sites),
        "total_steps": steps,
        "threshold": {"mode": "absolute", "value_g_per_kwh": 400},
        "policy": {"name": policy, "min_dwell_s": 0},
        "migration": {
            "checkpoint_s": 1,
            "transfer_s": 1,
            "restart_s": 1,
            "margin_g": 0.001,
            "pause_recheck_s": 600,
        },
        "gpu": {"steps_per_probe": 5, "max_probes": 3, "window_steps": 20},
        "signals": {"source": "trace", "trace_path": str(trace), "refresh_interval_s": 300},
        "ledger": {"path": str(tmp / "ledger.sqlite"), "run_name": name},
    }
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return config


def final_model(
    spec: JobSpec, site: str, *, step: int = STEPS, rank: int | None = None
) -> dict[str, torch.Tensor]:
    """The model tensors of the checkpoint at ``step`` in ``site``'s store (DDP: a rank's)."""
    url = spec.store_url(site)
    if rank is not None:
        url = f"{url}/rank-{rank:05d}"
    store = CheckpointStore(url, keep_last=None)
    try:
        loaded = store.load_latest()
    finally:
        store.close()
    assert loaded is not None, f"no checkpoint at {spec.store_url(site)}"
    info, tree = loaded
    assert info.step == step, f"the newest checkpoint is of step {info.step}, not {step}"
    model: dict[str, torch.Tensor] = tree["model"]
    return model


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Bit-identical tensors, same names and dtypes."""
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), f"{key} differs"


def supervise_cli(config: Path, **kwargs: Any) -> subprocess.Popen[str]:
    """``caftm run CONFIG`` as a subprocess (its own process group)."""
    return subprocess.Popen(
        [sys.executable, "-m", "caftm.cli", "run", "--quiet", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def wait_for(predicate: Callable[[], bool], timeout_s: float = 120.0, what: str = "") -> None:
    """Poll until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def book_of(config: Path) -> JobBook:
    """A JobBook on the job's ledger (read-write; close its ledger when done)."""
    spec = load_job(config)
    return JobBook(Ledger(spec.ledger_path))


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL a process group started by :func:`supervise_cli`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
