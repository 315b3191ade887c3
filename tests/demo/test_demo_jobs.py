"""The demo's job files set only what their policies read (issue 18)."""

from __future__ import annotations

from pathlib import Path

import yaml

from caftm.control.config import ThresholdConfig
from caftm.demo.showcase import write_jobs
from caftm.jobs.spec import load_job
from caftm.sim.policy_specs import DEFAULT_POLICY


def test_the_demo_jobs_carry_no_theta_that_their_policies_ignore(tmp_path: Path) -> None:
    paths = write_jobs(tmp_path)
    policies = set()
    for path in paths.values():
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        policies.add(data["policy"]["name"])
        # the shipped planner plans over forecasts and the carbon-agnostic twins never stop:
        # neither reads θ, so a job file that set one would show a knob that does nothing
        assert "threshold" not in data, path
        assert load_job(path).controller.threshold == ThresholdConfig()
    assert policies == {DEFAULT_POLICY, "carbon-agnostic"}
