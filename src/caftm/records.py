"""The records the controller writes and the ledger keeps: a run's states, its transitions and
how it ended.

They live below both :mod:`caftm.control` (which produces them) and :mod:`caftm.ledger` (which
stores and reads them back), so neither package imports the other for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class State(StrEnum):
    """The CAFTM states (IEEE CLOUD 2024) plus the pause of temporal shifting and the end."""

    SCALING = "scaling"  # find and apply the cheapest GPU setting
    TOLERANCE = "tolerance"  # train; constant-time check of the latest intensity per step
    SUSPEND = "suspend"  # take a complete checkpoint
    MIGRATION = "migration"  # choose: move, pause in place, or carry on here
    PAUSED = "paused"  # waiting in place for a cleaner grid (never past the deadline)
    DONE = "done"  # training finished


class RunStatus(StrEnum):
    """How a controller's run is doing or ended, as the ledger stores it (a job's leg closes
    its runs with the leg's status)."""

    RUNNING = "running"
    FINISHED = "finished"  # the training loop ended (a bare run)
    COMPLETED = "completed"  # training reached its end (a job's worker)
    MOVED = "moved"
    PAUSED = "paused"
    PREEMPTED = "preempted"
    SUSPENDED = "suspended"
    CANCELLED = "cancelled"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # its process died without closing it


@dataclass(frozen=True, slots=True)
class Event:
    """One recorded transition."""

    time: datetime  # UTC
    from_state: State
    to_state: State
    reason: str
    intensity_g_per_kwh: float
    site: str
    gpu_setting: float | None  # MHz or W; None: device default
