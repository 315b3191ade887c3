"""caftm.ledger: runs, measurement windows and controller events in sqlite or PostgreSQL.

>>> from caftm.ledger import Ledger
>>> with Ledger(":memory:") as ledger:
...     ledger.runs()
[]
"""

from __future__ import annotations

from caftm.ledger.backend import ledger_location, ledger_missing
from caftm.ledger.jobs import (
    JobBook,
    JobRecord,
    JobStatus,
    JobTotals,
    LegRecord,
    LegStatus,
    TransferRecord,
    TransferStatus,
)
from caftm.ledger.store import (
    EventRecord,
    Ledger,
    RunSpan,
    RunSummary,
    WindowRecord,
    default_ledger_path,
)

__all__ = [
    "EventRecord",
    "JobBook",
    "JobRecord",
    "JobStatus",
    "JobTotals",
    "Ledger",
    "LegRecord",
    "LegStatus",
    "RunSpan",
    "RunSummary",
    "TransferRecord",
    "TransferStatus",
    "WindowRecord",
    "default_ledger_path",
    "ledger_location",
    "ledger_missing",
]
