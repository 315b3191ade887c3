"""The job's accelerated clock: fast while the job trains or waits, 1× while it is held."""

from __future__ import annotations

import time

import pytest

from caftm.clock import HELD_SUFFIX, AcceleratedClock, job_clock
from caftm.errors import ConfigError

SPEED = 3600.0


def _elapsed(clock: AcceleratedClock, wall_s: float) -> float:
    """Virtual seconds ``clock`` advances over ``wall_s`` wall seconds of sleep."""
    before = clock()
    time.sleep(wall_s)
    return clock() - before


def test_a_held_clock_runs_at_the_wall_clocks_pace_and_a_running_one_at_its_speed() -> None:
    clock = AcceleratedClock.starting_at(1_000_000.0, SPEED, running=False)
    held = _elapsed(clock, 0.05)
    assert 0.04 < held < 1.0  # wall seconds, not grid hours
    clock.run()
    running = _elapsed(clock, 0.05)
    assert 0.04 * SPEED < running < 1.0 * SPEED
    clock.hold()
    assert 0.04 < _elapsed(clock, 0.05) < 1.0


def test_run_and_hold_move_the_anchor_without_a_jump() -> None:
    clock = AcceleratedClock.starting_at(1_000_000.0, SPEED)
    time.sleep(0.02)
    for change in (clock.hold, clock.run, clock.hold):
        before = clock()
        change()
        after = clock()
        assert 0 <= after - before < 0.01 * SPEED  # continuous: only the pace changes
    assert not clock.running


def test_the_environment_form_carries_the_held_state() -> None:
    clock = AcceleratedClock.starting_at(1_000_000.0, SPEED, running=False)
    text = clock.to_env()
    assert text.endswith(HELD_SUFFIX)
    again = job_clock({"CAFTM_CLOCK": text})
    assert isinstance(again, AcceleratedClock) and again == clock and not again.running
    clock.run()
    assert not clock.to_env().endswith(HELD_SUFFIX) and clock != again
    again.follow(clock.to_env())  # a supervisor taking a worker's clock from its status
    assert again == clock and again.running


@pytest.mark.parametrize("text", ["1@2*3,paused", "1@2", "soon", "1@2*0,held", "1@nan*3"])
def test_a_malformed_clock_is_refused_naming_the_variable(text: str) -> None:
    with pytest.raises(ConfigError, match=r"CAFTM_CLOCK|accelerated clock"):
        AcceleratedClock.from_env(text)
