"""What a display of a supervised job shows, and how it writes times."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from caftm.control.states import utc_from_s
from caftm.ledger.jobs import JobRecord

__all__ = ["JobView", "format_time"]


def format_time(time_s: float) -> str:
    """A POSIX time as readable UTC text (never a raw epoch number in output)."""
    return utc_from_s(time_s).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class JobView:
    """What a display shows: the job as stored and its worker's live status."""

    job: JobRecord
    status: dict[str, Any] = field(default_factory=dict)
    now_s: float = 0.0
