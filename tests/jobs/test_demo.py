"""``caftm demo``: the main job through the supervisor, against carbon-agnostic twins."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_moves_pauses_tunes_and_saves_carbon(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    done = subprocess.run(  # a relative --workdir, as `make demo` gives it
        [sys.executable, "-m", "caftm.cli", "demo", "--workdir", "demo", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["moves"] >= 1 and result["pauses"] >= 1 and result["clock_changes"] >= 1
    assert result["caftm_carbon_g"] < result["agnostic_carbon_g"]
    assert result["params_identical"] is True
    assert result["wall_s"] > 0 and result["simulated_gpu"] is True
    assert Path(result["timeline_png"]).is_absolute()
    assert Path(result["timeline_png"]).stat().st_size > 10_000
    text = done.stdout
    assert "SIMULATED GPU" in text and "SYNTHETIC" in text
    assert "caftm against carbon-agnostic" in text
    said = done.stdout + done.stderr  # fate lines: on stderr, or above the live display
    assert "moved KR →" in said and "paused at DE" in said
