"""A standby worker takes the job's clock from the supervisor's go, not from the environment it
was started with: the source worker trained (accelerated) after that, and the job's clock must
not run backwards from one leg to the next."""

from __future__ import annotations

import os
from pathlib import Path

import integ_scenario as sc
import pytest
import torch

from caftm.clock import CLOCK_ENV, AcceleratedClock
from caftm.control import Controller, make_policy
from caftm.integrations.torch import CarbonAwareTraining
from caftm.jobs import protocol
from caftm.jobs.standby import StandbyLeg, go_clock, wait_for_go
from caftm.signals.refresher import IntensityRefresher

SPEED = 3600.0


def test_the_go_carries_the_job_clock_as_it_stands(tmp_path: Path) -> None:
    standby = StandbyLeg(tmp_path, 2, "site-b")
    env = {protocol.ENV_STANDBY_FILE: str(standby.path), protocol.ENV_STANDBY_TOKEN: standby.token}
    clock = AcceleratedClock.starting_at(sc.START.timestamp(), SPEED, running=False)
    standby.go(clock.to_env())
    go = wait_for_go(env)
    assert go is not None and go_clock(go) == clock.to_env()
    assert AcceleratedClock.from_env(go_clock(go) or "") == clock  # held, the same anchor
    standby.go(None)  # a job on real time: no clock to take
    go = wait_for_go(env)
    assert go is not None and go_clock(go) is None


def test_a_standby_worker_adopts_the_clock_of_its_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # started (prestart) on the job's clock as it read then, running at SPEED ...
    started_with = AcceleratedClock.starting_at(sc.START.timestamp(), SPEED)
    monkeypatch.setenv(CLOCK_ENV, started_with.to_env())
    # ... while the source worker trained on for three more grid hours before the go
    at_go = AcceleratedClock.starting_at(sc.START.timestamp() + 3 * 3600, SPEED, running=False)
    standby = StandbyLeg(tmp_path, 2, "site-b")
    monkeypatch.setenv(protocol.ENV_STANDBY_FILE, str(standby.path))
    monkeypatch.setenv(protocol.ENV_STANDBY_TOKEN, standby.token)
    standby.go(at_go.to_env())

    config = sc.make_config(tmp_path / "store", site="site-b")
    clock = AcceleratedClock.from_env(os.environ[CLOCK_ENV])  # what Controller.from_config reads
    refresher = IntensityRefresher(sc.make_trace(), config.site_zones(), config.start_site,
                                   clock=clock)  # fmt: skip
    controller = Controller(make_policy(config.policy.name, config.rules()), refresher,
                            threshold=config.threshold_spec(), total_steps=config.total_steps,
                            clock=clock, simulated=True)  # fmt: skip
    with CarbonAwareTraining(
        config, model=torch.nn.Linear(2, 1), controller=controller, refresher_thread=False,
        knob_state_dir=tmp_path / "knob",
    ) as caftm:  # fmt: skip
        assert caftm.session is not None and caftm.session.job_clock is clock
        first_event_s = controller.events[0].time.timestamp()
        caftm.step()
    # the leg's first event is on the clock of the go (held: 1× since), not the older one
    assert at_go.origin_s <= first_event_s < at_go.origin_s + 60, first_event_s - at_go.origin_s
    assert clock.speed == SPEED and clock() >= at_go.origin_s
    assert os.environ[CLOCK_ENV] == at_go.to_env()  # what reads the clock later reads this one
