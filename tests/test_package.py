"""The package's public surface and its import cost stay as intended."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


# sqlite files caftm keeps besides the ledger: they own their tables and their SQL
_OWN_DATABASES = {"signals/cache.py"}  # the intensity cache
_SQL = re.compile(
    r"\bSELECT\b.+\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b|\bJOIN\b"
    r"|\bPRAGMA\b"
)


def test_only_the_ledger_queries_the_ledger() -> None:
    """Readers use the ledger's typed queries (Ledger, Feed, JobBook), never its SQL."""
    root = Path(caftm.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        name = path.relative_to(root).as_posix()
        if name.startswith("ledger/") or name in _OWN_DATABASES:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "._read(" in line or "._db." in line or _SQL.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == []
