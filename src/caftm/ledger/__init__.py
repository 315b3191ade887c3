"""caftm.ledger: runs, measurement windows and controller events in sqlite.

>>> from caftm.ledger import Ledger
>>> with Ledger(":memory:") as ledger:
...     ledger.runs()
[]
"""

from __future__ import annotations

from caftm.ledger.jobs import (
    JobBook,
    JobRecord,
    JobStatus,
    LegRecord,
    LegStatus,
    TransferRecord,
)
from caftm.ledger.store import Ledger, RunSummary, WindowRecord, default_ledger_path

__all__ = [
    "JobBook",
    "JobRecord",
    "JobStatus",
    "Ledger",
    "LegRecord",
    "LegStatus",
    "RunSummary",
    "TransferRecord",
    "WindowRecord",
    "default_ledger_path",
]
