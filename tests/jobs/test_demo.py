"""``caftm demo``: the main job through the supervisor, against carbon-agnostic twins, on a
machine kept busy by two other processes (the pause must still save carbon and meet its
deadline: process start-ups and moves run at 1× on the job's clock)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from tests.demo.figure_support import data_lines, joins_across_legs, leg_of_time

from caftm.demo.figure import demo_figure
from caftm.ledger import JobBook, Ledger
from caftm.report.timeline import job_path

pytestmark = pytest.mark.slow


@pytest.fixture
def busy_cpu() -> Iterator[None]:
    """Two processes spinning on the CPU for the whole test (killed at its end)."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)
    ]  # fmt: skip
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def test_demo_moves_pauses_tunes_and_saves_carbon_under_cpu_load(
    tmp_path: Path, busy_cpu: None
) -> None:
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
    # the pause: it saved carbon against its twin and completed by its deadline
    assert result["pause_saving_pct"] > 0 and result["deadline_met"] is True, result["jobs"]
    wait = result["jobs"]["wait"]
    assert wait["completed_at"] <= wait["deadline"]
    assert result["params_identical"] is True
    assert result["wall_s"] > 0 and result["simulated_gpu"] is True
    assert Path(result["timeline_png"]).is_absolute()
    assert Path(result["timeline_png"]).stat().st_size > 10_000
    text = done.stdout
    assert "SIMULATED GPU" in text and "SYNTHETIC" in text
    assert "caftm against carbon-agnostic" in text
    assert "job wait saved" in text and "met its deadline" in text
    said = done.stdout + done.stderr  # fate lines: on stderr, or above the live display
    assert "moved KR →" in said and "paused at DE" in said, said[-3000:]
    # the figure, read back: a move of seconds on the job's clock, no line across a gap
    with Ledger(tmp_path / "demo" / "ledger.sqlite", read_only=True) as ledger:
        book = JobBook(ledger)
        moves, _ = job_path(book, "move")
        assert moves and all(arrived - left < timedelta(minutes=5) for left, arrived, *_ in moves)
        fig = demo_figure(book, [("move", "move-agnostic"), ("wait", "wait-agnostic")])
        try:
            for column, name in enumerate(("move", "wait")):
                legs = leg_of_time(book, name) | leg_of_time(book, f"{name}-agnostic")
                for ax in fig.axes[column::2]:
                    for line in data_lines(ax):
                        assert joins_across_legs(line, legs) == [], (name, line.get_label())
        finally:
            plt.close(fig)
