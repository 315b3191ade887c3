"""The live controller end to end: fake clock, trace-backed source, real optimiser and ledger."""

from __future__ import annotations

import logging
import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.control.conftest import T0_S, FakeClock, oracle, synthetic_source
from tests.control.harness import CLOCKS_MHZ, Run, build

from caftm.control import (
    CAFTM,
    Controller,
    ControllerConfig,
    GreedyCleanest,
    Hooks,
    Rules,
    SuspendResume,
    ThresholdMode,
    ThresholdSpec,
)
from caftm.errors import ConfigError, ProviderError
from caftm.ledger import Ledger
from caftm.records import RunStatus, State
from caftm.signals.base import IntensitySource, Reading
from caftm.signals.refresher import IntensityRefresher
from caftm.signals.traces import TraceSource

HOUR_S = 3600.0
SITES = {"KR": "KR", "FR": "FR"}


def kr_fr_source() -> IntensitySource:
    # KR clean for 5 h, then dirty for 10 h, then clean; FR clean throughout (synthetic)
    return synthetic_source({"KR": [300.0] * 5 + [500.0] * 10 + [300.0] * 20, "FR": [60.0] * 35})


def kr_fr_run(clock: FakeClock, **options: Any) -> Run:
    """CAFTM (10 min dwell) starting in KR on :func:`kr_fr_source`, θ 400 g/kWh unless given."""
    options.setdefault("threshold", ThresholdSpec(value_g_per_kwh=400.0))
    options.setdefault("window_steps", 1000)
    return build(CAFTM(Rules(min_dwell_s=600.0)), kr_fr_source(), SITES, "KR", clock, **options)


def test_dirty_grid_suspends_checkpoints_moves_and_rescales(
    clock: FakeClock, tmp_path: Path
) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    run = kr_fr_run(clock, ledger=ledger)
    run.drive(8 * 18_000)  # 0.2 s steps: 8 h of fake time
    c = run.controller
    path = [(e.from_state, e.to_state) for e in c.events]
    assert path == [
        (State.SCALING, State.SCALING),  # run started
        (State.SCALING, State.TOLERANCE),
        (State.TOLERANCE, State.SUSPEND),
        (State.SUSPEND, State.MIGRATION),
        (State.MIGRATION, State.SCALING),
        (State.SCALING, State.TOLERANCE),
    ]
    suspend = c.events[2]
    assert suspend.time == datetime(2022, 1, 1, 5, tzinfo=UTC) or (
        abs(suspend.time.timestamp() - (T0_S + 5 * HOUR_S)) < 301  # within one poll
    )
    assert suspend.intensity_g_per_kwh == 500.0 and suspend.site == "KR"
    assert run.checkpoints == 1 and run.moves == ["FR"]
    assert c.site == "FR" and c.state is State.TOLERANCE
    assert c.setting in CLOCKS_MHZ and run.gpu.setting == c.setting
    c.close()
    assert c.state is State.DONE and run.gpu.applied[-1] is None  # GPU back to its default
    assert c.run_id is not None
    stored = ledger.events(c.run_id)
    assert [(e.from_state, e.to_state, e.reason) for e in stored] == [
        (e.from_state, e.to_state, e.reason) for e in c.events
    ]
    windows = ledger.windows(c.run_id)
    assert {w.phase for w in windows} == {"scaling", "tolerance"}
    assert {w.site for w in windows} == {"KR", "FR"}
    for w in windows:
        assert w.energy_j is not None and w.energy_j > 0
        assert w.carbon_g == pytest.approx(w.energy_j / 3.6e6 * w.intensity_g_per_kwh)
    (summary,) = ledger.runs()
    assert summary.status == "finished" and summary.simulated
    assert summary.steps == sum(w.steps for w in windows)
    assert summary.steps >= 8 * 18_000 - 1000  # every step is in some window but the last open one


def test_pause_in_place_resumes_when_clean(clock: FakeClock) -> None:
    source = synthetic_source({"DE": [300.0] * 3 + [500.0, 450.0, 380.0, 350.0] + [300.0] * 20})
    run = build(
        SuspendResume(Rules(min_dwell_s=600.0, pause_recheck_s=900.0)),
        source,
        {"DE": "DE"},
        "DE",
        clock,
        threshold=ThresholdSpec(value_g_per_kwh=400.0),
        tune_gpu=False,
        step_time_s=1.0,
    )
    run.drive(9 * 3600)  # 1 s steps: 9 h
    states = [e.to_state for e in run.controller.events]
    assert State.PAUSED in states and run.moves == []
    resumed = next(e for e in run.controller.events if e.from_state is State.PAUSED)
    # 380 is below θ but above the hysteresis level 360: resume only at 350 (hour 6)
    assert resumed.time.timestamp() == pytest.approx(T0_S + 6 * HOUR_S, abs=900.0)
    assert resumed.intensity_g_per_kwh == 350.0
    for started, until in run.pauses:
        assert until - started <= 900.0 + 1e-6  # re-checked at least every pause_recheck_s


def test_pause_never_runs_past_the_deadline(clock: FakeClock) -> None:
    source = synthetic_source({"DE": [300.0] * 2 + [600.0] * 30})
    deadline_s = T0_S + 10 * HOUR_S
    total_steps = 6 * 18_000  # 6 h of work at 0.2 s
    run = build(
        SuspendResume(Rules(min_dwell_s=600.0, deadline_s=deadline_s)),
        source,
        {"DE": "DE"},
        "DE",
        clock,
        threshold=ThresholdSpec(value_g_per_kwh=400.0),
        tune_gpu=False,
        total_steps=total_steps,
        window_steps=1000,
    )
    run.drive(total_steps)
    c = run.controller
    assert run.pauses, "the dirty grid should have paused the job"
    assert (
        max(until for _, until in run.pauses) <= deadline_s - 0.9 * (total_steps - 2 * 18_000) * 0.2
    )
    assert clock.now_s <= deadline_s + 60.0  # the work still met the deadline
    assert any(e.reason.startswith("deadline") for e in c.events)
    assert c.state is State.TOLERANCE  # CI still dirty, but no slack: no new suspend


def test_failed_checkpoint_keeps_training_here(clock: FakeClock) -> None:
    run = kr_fr_run(clock, checkpoint_fails=True)
    run.drive(6 * 18_000)
    assert run.checkpoints >= 1 and run.moves == []
    failed = [e for e in run.controller.events if e.reason.startswith("checkpoint failed")]
    assert failed and failed[0].to_state is State.TOLERANCE
    assert run.controller.site == "KR"


def test_step_path_calls_neither_clock_nor_source_in_tolerance(clock: FakeClock) -> None:
    calls = {"clock": 0, "source": 0}
    source = synthetic_source({"DE": [300.0] * 48})
    real_intensity = source.intensity

    def counting_intensity(zone: str, time: datetime | None = None) -> Reading:
        calls["source"] += 1
        return real_intensity(zone, time)

    source.intensity = counting_intensity  # type: ignore[method-assign]

    def counting_clock() -> float:
        calls["clock"] += 1
        return clock.now_s

    refresher = IntensityRefresher(source, {"DE": "DE"}, "DE", clock=counting_clock)
    controller = Controller(
        CAFTM(), refresher, clock=counting_clock, check_every_steps=500, window_steps=10_000
    )
    controller.start(run_refresher_thread=False)
    assert controller.state is State.TOLERANCE
    before = dict(calls)
    for _ in range(10_000):
        controller.step()
    assert calls["source"] == before["source"]
    # only the periodic slow-path checks (every 500 steps) read the clock
    assert calls["clock"] - before["clock"] <= 3 * (10_000 // 500) + 3


def test_step_path_stays_fast_without_any_reading(clock: FakeClock) -> None:
    # a provider down from the start leaves the intensity NaN: that alone must not send every
    # step down the slow path (new readings still force a check through the refresh listener)
    source = FlakySource()
    source.fail = True
    refresher = IntensityRefresher(source, {"DE": "DE"}, "DE", clock=clock)
    controller = Controller(
        CAFTM(), refresher, clock=clock, check_every_steps=500, window_steps=10_000
    )
    controller.start(run_refresher_thread=False)
    assert controller.state is State.TOLERANCE
    assert math.isnan(refresher.current_intensity_g_per_kwh)
    slow = 0
    slow_step = controller._slow_step

    def counting() -> State:
        nonlocal slow
        slow += 1
        return slow_step()

    controller._slow_step = counting  # type: ignore[method-assign]
    for _ in range(5_000):
        controller.step()
    assert slow <= 5_000 // 500 + 1


class FlakySource(IntensitySource):
    """A source whose provider fails on demand (the failure is real: ProviderError)."""

    name = "flaky"

    def __init__(self) -> None:
        self.fail = False
        self.value = 200.0

    def zones(self) -> list[str]:
        return ["DE"]

    def intensity(self, zone: str, time: datetime | None = None) -> Reading:
        if self.fail:
            raise ProviderError("provider down (test)")
        from caftm.signals.base import Basis, Kind

        return Reading(
            zone, time or datetime.now(UTC), self.value, Basis.LIFECYCLE, Kind.MEASURED, "t"
        )

    def history(self, zone: str, start: datetime, end: datetime) -> list[Reading]:
        return []


def test_refresher_keeps_the_last_value_and_logs_once(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    source = FlakySource()
    refresher = IntensityRefresher(source, {"DE": "DE"}, "DE", clock=clock)
    refresher.refresh_once()
    assert refresher.current_intensity_g_per_kwh == 200.0
    source.fail = True
    with caplog.at_level(logging.WARNING, logger="caftm.signals.refresher"):
        for _ in range(5):
            refresher.refresh_once()
    assert refresher.current_intensity_g_per_kwh == 200.0
    assert len([r for r in caplog.records if "provider down" in r.getMessage()]) == 1
    source.fail, source.value = False, 250.0
    refresher.refresh_once()
    assert refresher.current_intensity_g_per_kwh == 250.0
    assert refresher.version == 7


def test_refresher_thread_polls_in_the_background() -> None:
    source = FlakySource()
    refresher = IntensityRefresher(source, {"DE": "DE"}, "DE", interval_s=0.01)
    with refresher:
        assert refresher.running
        source.value = 321.0
        import time

        deadline = time.monotonic() + 5.0
        while refresher.current_intensity_g_per_kwh != 321.0 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert refresher.current_intensity_g_per_kwh == 321.0
    assert not refresher.running


def test_state_dict_round_trip_restarts_in_scaling(clock: FakeClock) -> None:
    run = kr_fr_run(clock)
    run.drive(6 * 18_000)
    saved = run.controller.state_dict()
    refresher = IntensityRefresher(kr_fr_source(), SITES, "FR", clock=clock)
    restored = Controller(CAFTM(), refresher, clock=clock)
    restored.load_state_dict(saved)
    assert restored.steps_done == run.controller.steps_done
    assert restored.state is State.SCALING and restored.site == "FR"


def test_from_config_builds_a_working_controller(clock: FakeClock, tmp_path: Path) -> None:
    config = ControllerConfig.from_dict(
        {
            "sites": ["KR", "FR"],
            "threshold": {"mode": "absolute", "value_g_per_kwh": 400},
            "policy": {"name": "caftm", "min_dwell_s": 600},
            "ledger": {"path": str(tmp_path / "l.sqlite"), "run_name": "from-config"},
        },
        env={},
    )
    controller = Controller.from_config(config, source=kr_fr_source(), clock=clock)
    controller.start(run_refresher_thread=False)
    for hour in range(8):
        clock.now_s = T0_S + hour * HOUR_S
        controller._refresher.refresh_once()
        for _ in range(200):
            clock.advance(0.5)
            controller.step()
    assert controller.site == "FR"
    controller.close()
    assert controller.ledger is not None
    (summary,) = controller.ledger.runs()
    assert summary.name == "from-config" and summary.policy == "caftm"
    assert math.isnan(controller.events[0].intensity_g_per_kwh) is False


def test_from_config_refuses_an_unchecked_greedy_switch_fraction(clock: FakeClock) -> None:
    config = ControllerConfig.from_dict(
        {"sites": ["KR", "FR"], "policy": {"name": "greedy-cleanest"}}, env={}
    )
    policy = config.policy.model_copy(update={"greedy_switch_fraction": 1.5})
    unchecked = config.model_copy(update={"policy": policy})  # skips pydantic's range check
    with pytest.raises(ConfigError, match=r"policy\.greedy_switch_fraction"):
        Controller.from_config(unchecked, source=kr_fr_source(), use_ledger=False, clock=clock)
    good = config.model_copy(
        update={"policy": policy.model_copy(update={"greedy_switch_fraction": 0.4})}
    )
    controller = Controller.from_config(good, source=kr_fr_source(), use_ledger=False, clock=clock)
    assert isinstance(controller.policy, GreedyCleanest)
    assert controller.policy.switch_fraction == 0.4


def test_relative_threshold_suspends_in_the_dirtiest_hours(real_trace: TraceSource) -> None:
    """θ = the 75th percentile of the next 24 h (perfect forecast from the real DE trace)."""
    clock = FakeClock(datetime(2022, 3, 1, tzinfo=UTC).timestamp())
    spec = ThresholdSpec(ThresholdMode.RELATIVE, percentile=75.0, hysteresis_fraction=0.05)
    run = build(
        SuspendResume(Rules(min_dwell_s=HOUR_S)),
        oracle(real_trace),
        {"DE": "DE"},
        "DE",
        clock,
        threshold=spec,
        tune_gpu=False,
        step_time_s=60.0,
        window_steps=10_000,
    )
    run.drive(3 * 24 * 60)
    series = real_trace.series("DE")
    suspends = [e for e in run.controller.events if e.to_state is State.SUSPEND]
    assert suspends
    for event in suspends:
        hour = int((event.time.timestamp() - real_trace.start_s) // HOUR_S)
        theta = np.percentile(series[hour : hour + 24], 75.0)
        assert event.intensity_g_per_kwh >= theta - 1e-9
        assert f"θ {theta:.0f}" in event.reason


def test_auto_threshold_moves_once_to_the_clean_site_and_stays(clock: FakeClock) -> None:
    run = kr_fr_run(clock, threshold=ThresholdSpec(ThresholdMode.AUTO))
    run.drive(10 * 18_000)
    assert run.moves == ["FR"]  # break-even: KR at 300 already pays for the move to FR at 60
    assert run.controller.site == "FR" and run.controller.state is State.TOLERANCE


def test_refresher_drops_forecast_hours_that_passed(clock: FakeClock) -> None:
    source = oracle(synthetic_source({"DE": [float(v) for v in range(100, 148)]}))
    refresher = IntensityRefresher(
        source, {"DE": "DE"}, "DE", clock=clock, want_forecast=True, forecast_interval_s=6 * HOUR_S
    )
    refresher.refresh_once()
    assert refresher.forecast_from("DE", clock.now_s)[:3] == (100.0, 101.0, 102.0)
    clock.advance(2.5 * HOUR_S)
    refresher.refresh_once()  # not due: the forecast fetched at t0 is kept
    assert refresher.forecast_from("DE", clock.now_s)[:2] == (102.0, 103.0)
    assert refresher.current_intensity_g_per_kwh == 102.0


class _Unwind(Exception):
    pass


def test_a_hook_that_unwinds_leaves_a_consistent_controller(clock: FakeClock) -> None:
    """Integrations end the process from the pause hook; if it carries on, so does the cycle."""
    source = synthetic_source({"DE": [300.0] * 2 + [600.0] * 3 + [200.0] * 10})
    refresher = IntensityRefresher(source, {"DE": "DE"}, "DE", clock=clock)
    unwinds = []

    def pause(until_s: float) -> None:
        unwinds.append(until_s)
        raise _Unwind

    controller = Controller(
        SuspendResume(Rules(min_dwell_s=0.0)),
        refresher,
        clock=clock,
        hooks=Hooks(pause=pause),
        threshold=ThresholdSpec(value_g_per_kwh=400),
    )
    controller.start(run_refresher_thread=False)
    clock.advance(2.5 * HOUR_S)
    refresher.refresh_once()
    with pytest.raises(_Unwind):
        controller.step()
    assert controller.state is State.PAUSED and len(unwinds) == 1
    with pytest.raises(_Unwind):  # still dirty: the next step re-enters the pause
        controller.step()
    clock.advance(3 * HOUR_S)
    refresher.refresh_once()
    assert controller.step() in (State.SCALING, State.TOLERANCE)  # clean: training resumes
    assert controller.state is State.TOLERANCE


def test_a_moved_run_ends_without_claiming_training_finished(
    clock: FakeClock, tmp_path: Path
) -> None:
    ledger = Ledger(tmp_path / "ledger.sqlite")
    run = kr_fr_run(clock, ledger=ledger)
    run.drive(8 * 18_000)
    c = run.controller
    assert run.moves == ["FR"]
    c.close(status=RunStatus.MOVED)
    last = c.events[-1]
    assert last.to_state is State.DONE and last.reason == "run ended: moved"
    assert run.gpu.applied[-1] is None  # the GPU is restored whatever the ending
    assert c.run_id is not None
    assert [r.status for r in ledger.runs() if r.run_id == c.run_id] == ["moved"]


def test_a_failing_ledger_never_stops_the_training(
    clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(path)
    run = kr_fr_run(clock, ledger=ledger, window_steps=200)
    run.drive(1000)
    with sqlite3.connect(path) as other:  # the file breaks mid-run (damaged by hand, full disk)
        other.execute("DROP TABLE windows")
        other.execute("DROP TABLE events")
    with caplog.at_level(logging.WARNING, logger="caftm.control"):
        run.drive(8 * 18_000)  # suspends, moves and re-scales as if nothing happened
        c = run.controller
        assert run.moves == ["FR"] and c.state is State.TOLERANCE
        assert c.ledger_records_lost >= 5  # windows and events alike
        assert sum("not recorded, training goes on" in r.message for r in caplog.records) == 1
        c.close()
    assert c.state is State.DONE and run.gpu.applied[-1] is None
    lost = c.ledger_records_lost
    assert any(f"{lost} ledger records were lost" in r.message for r in caplog.records)


@pytest.mark.parametrize("speed", [1.0, 60.0])
def test_the_default_deadline_is_the_jobs_length_on_its_own_clock(
    clock: FakeClock, speed: float
) -> None:
    """Without a deadline the planner gives 1.1× the job's length, measured on the controller's
    clock: under an accelerated job clock the meter's pace would make it ``speed`` times short."""
    from caftm.control.planner import DEFAULT_DEADLINE_FACTOR, Planner

    source = synthetic_source({"KR": [300.0] * 48, "FR": [300.0] * 48})
    planner = Planner(Rules())
    run = build(planner, source, SITES, "KR", clock, total_steps=3000, job_clock_speed=speed)
    start_s = run.controller._clock()
    run.drive(300)  # the probes and the first Tolerance windows
    assert planner.rules.deadline_s is not None
    job_s = 3000 * 0.2 * speed  # full clock: 0.2 s a step on the meter, ``speed``× on the clock
    given_s = planner.rules.deadline_s - start_s
    assert (
        DEFAULT_DEADLINE_FACTOR * job_s * 0.95 <= given_s <= DEFAULT_DEADLINE_FACTOR * job_s * 1.6
    )
    run.controller.close()
