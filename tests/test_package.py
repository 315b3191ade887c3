"""The package's public surface and its import cost stay as intended."""

from __future__ import annotations

import subprocess
import sys

import caftm


def test_public_names_are_pinned_and_sorted() -> None:
    assert caftm.__all__ == [
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
    assert caftm.__all__ == sorted(caftm.__all__)


def test_error_tree() -> None:
    assert issubclass(caftm.DataError, caftm.ConfigError)
    assert issubclass(caftm.AuthError, caftm.ProviderError)
    assert issubclass(caftm.PermissionDeniedError, caftm.DeviceError)
    for name in caftm.__all__[:-1]:
        assert issubclass(getattr(caftm, name), caftm.CaftmError)


def test_library_never_imports_rich_or_torch_at_import() -> None:
    code = (
        "import sys, caftm, caftm.signals, caftm.gpu, caftm.regions, caftm.control, "
        "caftm.ledger; "
        "print(','.join(m for m in ('rich', 'typer', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_test_doubles_are_public() -> None:
    import caftm.clock
    import caftm.jobs.executors.scripted as scripted

    assert "FakeClock" in caftm.clock.__all__
    assert scripted.__all__ == ["LegScript", "ScriptedExecutor", "ScriptedLeg", "SupervisorKilled"]
