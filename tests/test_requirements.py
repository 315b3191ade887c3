"""The suite's requirements (tests/conftest.py): a missing part stops the run with one line; a
skip that hides one fails; ``CAFTM_TESTS_ALLOW_SKIPS=1`` keeps skips for developers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SKIPPING = """
import pytest

def test_widget():
    pytest.skip("no widget here")

def test_gpu():
    pytest.skip("needs a CUDA GPU")
"""


def _pytest(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_skipping.py").write_text(SKIPPING, encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": str(TESTS), **env}
    environment.pop("CAFTM_TESTS_ALLOW_SKIPS", None)
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
         "-p", "no:xdist", "--rootdir", str(tmp_path), str(tmp_path / "test_skipping.py")],
        capture_output=True, text=True, timeout=120, env=environment, cwd=tmp_path,
    )  # fmt: skip


def test_a_missing_part_stops_the_run_with_one_line(tmp_path: Path) -> None:
    run = _pytest(tmp_path, CAFTM_SHARED_DATA=str(tmp_path / "nowhere"))
    assert run.returncode == 4
    said = [line for line in (run.stdout + run.stderr).splitlines() if "needs" in line]
    assert len(said) == 1 and "../shared/data" in said[0] and "CAFTM_TESTS_ALLOW_SKIPS=1" in said[0]
    assert "Traceback" not in run.stdout + run.stderr


def test_a_skip_that_hides_a_missing_part_fails_and_a_gpu_skip_stays(tmp_path: Path) -> None:
    run = _pytest(tmp_path)
    assert run.returncode == 1, run.stdout
    assert "1 failed, 1 skipped" in run.stdout
    assert "skipped in a complete environment: Skipped: no widget here" in run.stdout


def test_developers_may_keep_skips(tmp_path: Path) -> None:
    run = _pytest(
        tmp_path, CAFTM_SHARED_DATA=str(tmp_path / "nowhere"), CAFTM_TESTS_ALLOW_SKIPS="1"
    )
    assert run.returncode == 0, run.stdout
    assert "2 skipped" in run.stdout
