"""The examples meet bad input as the CLI does: one error line, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(
    ("script", "option", "message"),
    [
        ("train_cnn.py", "--config", "must hold a mapping"),
        ("resume_cnn.py", "--store", "cannot list checkpoint directory"),
    ],
)
def test_a_file_where_a_directory_belongs(
    tmp_path: Path, script: str, option: str, message: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), option, str(blocker)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert str(blocker) in lines[0]
