"""The demo's comparison table fits an 80-column terminal without cutting a job's name."""

from __future__ import annotations

from rich.console import Console

from caftm.cli.demo import comparison_table
from caftm.demo.showcase import DemoResult


def _job(sites: list[str]) -> dict[str, object]:
    return {"carbon_g": 3.857, "energy_j": 27720.0, "jct_h": 3.1, "moves": 1, "pauses": 0,
            "clock_changes": 6, "sites": sites}  # fmt: skip


def test_the_comparison_fits_80_columns_and_keeps_every_job_name() -> None:
    names = ["move", "move-agnostic", "wait", "wait-agnostic"]
    result = DemoResult(
        caftm_carbon_g=6.9,
        agnostic_carbon_g=7.7,
        caftm_energy_j=5e4,
        agnostic_energy_j=5e4,
        moves=1,
        pauses=1,
        clock_changes=6,
        params_identical=True,
        wall_s=27.0,
        caftm_jct_h=3.1,
        agnostic_jct_h=3.0,
        pause_saving_pct=17.0,
        deadline_met=True,
        jobs={n: _job(["KR", "JP-TK", "CA-ON"]) for n in names},
        timeline_png=None,
    )
    console = Console(width=80, record=True, color_system=None)
    console.print(comparison_table(result))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80, text
    rows = [line.split()[0] for line in text.splitlines() if line.split()]
    for name in names:
        assert name in rows, text
    assert "…" not in text, text
