"""The planner's current plan reaches the ledger (a versioned record per new plan) and
``caftm status`` shows it in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tests.control.conftest import T0_S
from tests.sim.sim_support import drive_controller, wavy_sites

from caftm.control import Rules
from caftm.dashboard.model import Board
from caftm.ledger.feed import Scope
from caftm.control.planner import PLAN_RECORD_VERSION, Planner
from caftm.ledger import JobBook, Ledger
from caftm.sim import SPECS, GpuProfile, MoveModel


def test_the_plan_is_recorded_and_caftm_status_shows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "l.sqlite"
    monkeypatch.setenv("CAFTM_JOB", "j")
    monkeypatch.setenv("CAFTM_LEG", "1")
    gpu = GpuProfile.simulated("gpt")
    with Ledger(db) as ledger:
        JobBook(ledger).create("j", site="A", store_url="/s", executor="local", spec={})
        drive_controller(
            Planner(Rules(move_cost=MoveModel().cost(2.0))),
            wavy_sites(),
            ["A", "B", "C"],
            "A",
            hours=6.0,
            threshold=SPECS["planner"].threshold,
            power_w=gpu.power_at(None),
            idle_power_w=gpu.idle_power_w,
            downtime_s=300.0,
            start_s=T0_S + 50 * 3600.0,
            total_steps=30,
            ledger=ledger,
        )
        plan = ledger.latest_plan(job="j")
        count = ledger._read("SELECT COUNT(*) FROM plans")[0][0]
    assert plan is not None and plan["v"] == PLAN_RECORD_VERSION
    assert count >= 2, "a new plan is recorded as the hours pass"
    slots = plan["slots"]
    assert slots and {"start_s", "end_s", "site", "action", "setting", "work_s"} <= set(slots[0])
    assert plan["deadline_s"] == pytest.approx(T0_S + 50 * 3600.0 + 1.1 * 30 * 3600.0)
    summary = str(plan["summary"])
    assert summary.startswith("plans to ") and " UTC" in summary
    done = subprocess.run(
        [sys.executable, "-m", "caftm.cli", "status", "j", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path), "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    assert f"plan: {summary}" in " ".join(done.stdout.split()), done.stdout
    board = Board(db)
    try:
        _, view = board.view(Scope.of_job("j"))
    finally:
        board.close()
    assert view["plan"]["summary"] == summary, "the dashboard shows the newest plan"
    assert view["plan"]["deadline"].endswith(" UTC")
