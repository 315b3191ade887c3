"""examples/resume_cnn.py refuses bad options and an unwritable store before any training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "resume_cnn.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in done.stderr and "starting at step" not in done.stdout
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--every", "0"], "--every 0: give a whole number of steps >= 1"),
        (["--every", "-3"], "--every -3: give a whole number of steps >= 1"),
        (["--steps", "-5"], "--steps -5: give a whole number of steps >= 1"),
        (["--steps", "0"], "--steps 0: give a whole number of steps >= 1"),
    ],
)
def test_bad_step_options_are_one_error_line(tmp_path: Path, args: list[str], message: str) -> None:
    assert message in one_error_line(run("--store", str(tmp_path / "ckpt"), *args))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere; no unwritable folder")
def test_unwritable_store_fails_before_training(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        line = one_error_line(run("--store", str(locked / "ckpt"), "--steps", "5"))
    finally:
        locked.chmod(0o700)
    assert "cannot be written" in line or "cannot" in line


def test_store_under_a_read_only_filesystem_fails_before_training() -> None:
    target = Path("/proc/caftm-ckpt")  # /proc refuses new entries even for root
    line = one_error_line(run("--store", str(target), "--steps", "5"))
    assert str(target) in line
