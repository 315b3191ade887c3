"""Shared pieces of the supervisor tests: job files on a synthetic rotating trace, final params.

The trace (SYNTHETIC, written by the test) makes one site clean at a time, rotating every
``period_h`` hours. The test workers' job clock follows their steps (``STEP_CLOCK_S`` grid
seconds a step, see ``step_clock.py``): the clean site changes every ``STEPS_PER_ROTATION``
steps however long legs take to start, so the number of moves does not depend on the machine.
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

from caftm.checkpoint import CheckpointStore, TrainingState
from caftm.jobs.spec import JobSpec, load_job
from caftm.ledger import JobBook, JobRecord, Ledger

START = datetime(2026, 3, 1, tzinfo=UTC)
SITES = ("KR", "FR", "DE")
STEPS = 400
#: the clean site rotates every PERIOD_H grid hours, i.e. every STEPS_PER_ROTATION steps: a
#: carbon-aware job of STEPS steps moves about STEPS / STEPS_PER_ROTATION times
PERIOD_H = 4
STEPS_PER_ROTATION = 100
STEP_CLOCK_S = PERIOD_H * 3600 / STEPS_PER_ROTATION
#: the supervisor's accelerated clock (grid seconds per wall second): pauses wait on it
SPEED = 1800.0
#: each step takes at least this long (s); 0: as fast as the CPU goes (gates, not pacing,
#: open the windows the fault tests act in)
PACE_S = 0.0
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
    step_clock: bool = True,
    ledger: str | None = None,
) -> Path:
    """A job file in ``tmp`` training the demo CNN on the rotating trace (the workers' clock
    follows their steps unless ``step_clock`` is False: then the supervisor's accelerated one);
    its ledger ``ledger`` (a file or a ``postgresql://`` URL; default: a file in ``tmp``)."""
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
            "env": {
                "PACE_S": str(PACE_S),
                "STEP_CLOCK_S": str(STEP_CLOCK_S) if step_clock else "0",
                **(job or {}).get("env", {}),
            },
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
        "ledger": {"path": ledger or str(tmp / "ledger.sqlite"), "run_name": name},
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


def damage_a_checkpoint(spec: JobSpec, site: str, step: int, *, rank: int | None = None) -> None:
    """A checkpoint of ``step`` owned by the job in ``site``'s store (DDP: a rank's), with its
    tensors cut to 0 bytes (as a full disk or a kill during the write leaves it)."""
    url = spec.store_url(site)
    if rank is not None:
        url = f"{url}/rank-{rank:05d}"
    with CheckpointStore(url, keep_last=None, owner=spec.identity) as store:
        info = store.save(TrainingState(extra={"seeded": step}, rng=False), step=step)
    folder = Path(url) / Path(info.path).name
    damaged = [f for f in folder.iterdir() if f.name != "MANIFEST.json" and f.stat().st_size]
    damaged[0].write_bytes(b"")


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Bit-identical tensors, same names and dtypes."""
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), f"{key} differs"


def caftm_cli(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """``caftm ARGS`` run to its end on a wide terminal (200 columns)."""
    return subprocess.run(
        [sys.executable, "-m", "caftm.cli", *args], capture_output=True, text=True,
        timeout=timeout_s, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


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


def run_job(config: Path) -> tuple[JobRecord, JobBook]:
    """Supervise the job in this process to its end; returns its record and a book on its
    ledger (close ``book.ledger`` when done)."""
    from caftm.jobs.supervisor import Supervisor

    spec = load_job(config)
    with Supervisor(spec) as supervisor:
        job = supervisor.run()
    return job, JobBook(Ledger(spec.ledger_path))


def book_of(config: Path) -> JobBook:
    """A JobBook on the job's ledger (read-write; close its ledger when done)."""
    spec = load_job(config)
    return JobBook(Ledger(spec.ledger_path))


class Gate:
    """The handshake of ``paced_worker.py``: the worker stops before completing ``step`` until
    the test opens the gate (``env`` goes into the job's ``env``)."""

    def __init__(self, tmp: Path, step: int) -> None:
        self.path = tmp / f"gate-{step}"
        self.step = step
        self.env = {"GATE_STEP": str(step), "GATE_FILE": str(self.path)}

    def wait_reached(self, timeout_s: float = 180.0) -> int:
        """Wait until a worker stands at the gate; returns its pid."""
        wait_for(lambda: self.path.exists() and self.path.read_text().strip() != "",
                 timeout_s, what=f"a worker at step {self.step}")  # fmt: skip
        return int(self.path.read_text().strip())

    def open(self) -> None:
        self.path.with_name(self.path.name + ".open").write_text("open", encoding="utf-8")


class LineReader:
    """Lines of a process's output, read on a thread, so a test can wait for one."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        import threading

        self.lines: list[str] = []
        assert process.stdout is not None
        self._stream = process.stdout
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._stream:
            self.lines.append(line)

    def wait_for_line(self, text: str, timeout_s: float = 180.0) -> None:
        wait_for(lambda: any(text in line for line in self.lines), timeout_s, what=repr(text))

    def text(self, timeout_s: float = 300.0) -> str:
        """All output, once the stream has ended."""
        self._thread.join(timeout_s)
        return "".join(self.lines)


def kill_group(process: subprocess.Popen[str]) -> None:
    """SIGKILL a process group started by :func:`supervise_cli`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
