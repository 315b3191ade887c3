"""caftm's exceptions, one tree.

    CaftmError
     ├── ConfigError          bad configuration or input value (unknown zone, absurd number, ...)
     │    └── DataError       malformed data file (CSV/Parquet/JSON), with path and line
     ├── ProviderError        a carbon-intensity provider failed (network, HTTP status, format)
     │    └── AuthError       missing, invalid or expired API key
     ├── DeviceError          GPU/NVML problem (unknown index, unsupported value, ...)
     │    └── PermissionDeniedError  setting clocks/limits needs root or CAP_SYS_ADMIN
     ├── CheckpointError      checkpoint missing, incomplete, tampered or unreadable
     ├── LedgerError          the run ledger cannot be written or read (disk full, locked)
     └── ExecutorError        a job could not be started, moved or supervised

Foreign errors are translated once, at the boundary, with ``raise ... from e`` and context.
The CLI turns any ``CaftmError`` into one error line and exit code 2.
"""

from __future__ import annotations

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
]


class CaftmError(Exception):
    """Base class of every error caftm raises on purpose."""


class ConfigError(CaftmError, ValueError):
    """A configuration value or user input is invalid."""


class DataError(ConfigError):
    """A data file is malformed; the message names the file and where."""


class ProviderError(CaftmError):
    """A carbon-intensity provider could not answer."""


class AuthError(ProviderError):
    """A provider rejected or lacks credentials (the key itself is never shown)."""


class DeviceError(CaftmError):
    """A GPU could not be read or configured."""


class PermissionDeniedError(DeviceError):
    """Changing a GPU setting needs root or CAP_SYS_ADMIN."""


class CheckpointError(CaftmError):
    """A checkpoint is missing, incomplete, tampered with or unreadable."""


class LedgerError(CaftmError):
    """The run ledger could not be written or read (disk full, locked, damaged)."""


class ExecutorError(CaftmError):
    """A job could not be launched, moved or supervised."""
