"""caftm: carbon-aware, fault-tolerant training.

Watches grid carbon intensity, tunes the GPU clock or power limit to the cheapest setting,
checkpoints and moves training when the grid gets dirty, and resumes bit-exactly.
"""

from __future__ import annotations

import logging

from caftm.errors import (
    AuthError,
    CaftmError,
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    ExecutorError,
    LedgerError,
    PermissionDeniedError,
    ProviderError,
)

__version__ = "0.1.0"

__all__ = [
    "AuthError",
    "CaftmError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "ExecutorError",
    "LedgerError",
    "PermissionDeniedError",
    "ProviderError",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
