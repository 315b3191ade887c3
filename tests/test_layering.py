"""The packages stay in layers: a lower package never imports a higher one, so none import
each other (read statically from every import statement, function-level and TYPE_CHECKING
ones included, and checked once at run time)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "caftm"

#: package (or top-level module) → caftm packages it must never import
_ABOVE_LEDGER = ("control", "jobs", "integrations", "report", "dashboard", "cli", "demo", "sim")
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "records": ("control", "ledger", *_ABOVE_LEDGER),
    "_protocol_env": ("control", "ledger", *_ABOVE_LEDGER),
    "_registry": ("control", "ledger", "signals", "gpu", *_ABOVE_LEDGER),
    "ledger": _ABOVE_LEDGER,
    "signals": ("ledger", *_ABOVE_LEDGER),
    "gpu": ("ledger", "signals", *_ABOVE_LEDGER),
    "control": ("jobs", "integrations", "report", "dashboard", "cli", "demo", "sim"),
}


def caftm_imports(path: Path) -> set[str]:
    """The caftm packages (second name component) that ``path``'s import statements name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        names |= {m.split(".")[1] for m in modules if m.startswith("caftm.")}
    return names


def _files(unit: str) -> list[Path]:
    package = SRC / unit
    return sorted(package.rglob("*.py")) if package.is_dir() else [SRC / f"{unit}.py"]


@pytest.mark.parametrize("unit", sorted(FORBIDDEN))
def test_no_package_imports_one_above_it(unit: str) -> None:
    files = _files(unit)
    assert files and all(f.is_file() for f in files)
    wrong = {
        f"{path.relative_to(SRC)} imports caftm.{name}"
        for path in files
        for name in caftm_imports(path) & set(FORBIDDEN[unit])
    }
    assert not wrong, sorted(wrong)


def test_the_checker_sees_function_level_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from caftm.control.states import utc_from_s\n")
    assert caftm_imports(module) == {"control"}


def test_importing_the_ledger_loads_no_controller() -> None:
    code = (
        "import sys, caftm.ledger, caftm.ledger.jobs, caftm.ledger.feed; "
        "print(','.join(m for m in ('caftm.control', 'caftm.jobs') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""
