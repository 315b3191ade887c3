"""ControllerSession on its own: pause in place, failed checkpoints, a failed start, and the
runnable example."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import integ_scenario as sc
import pytest
from torch import nn

from caftm.control import Controller, Preempt, make_policy
from caftm.errors import LedgerError
from caftm.gpu.knob import GpuKnob
from caftm.gpu.simulated import SimulatedBackend
from caftm.integrations import ControllerSession, Outcome
from caftm.ledger import Ledger
from caftm.records import RunStatus, State
from caftm.signals.refresher import IntensityRefresher

REPO = Path(__file__).resolve().parents[2]


def _session(tmp_path: Path, spike: int, *, pause_in_place: bool, sleeps: list[float]):  # type: ignore[no-untyped-def]
    config = sc.make_config(tmp_path, policy="suspend-resume")
    clock = sc.VirtualClock()
    controller, refresher = sc.make_controller(
        config, sc.make_trace((spike, spike + 1, sc.TRACE_STEPS)), clock
    )

    def sleep(duration_s: float) -> None:
        sleeps.append(duration_s)
        clock.now_s += duration_s

    session = ControllerSession(
        controller, pause_in_place=pause_in_place, refresher_thread=False, sleep=sleep, clock=clock
    )
    session.start()
    return session, clock, refresher


def test_pause_in_place_sleeps_then_carries_on(tmp_path: Path) -> None:
    sleeps: list[float] = []
    session, clock, refresher = _session(tmp_path, 4, pause_in_place=True, sleeps=sleeps)
    saved: list[int] = []
    for step in range(1, 9):
        clock.at_step(max(step, int((clock() - sc.START.timestamp()) // sc.STEP_S)))
        refresher.refresh_once()
        assert session.after_step(step, lambda step=step: saved.append(step)) is None
    assert saved == [4]  # one checkpoint, at the spike
    assert sleeps and all(s > 0 for s in sleeps)
    assert session.controller.state is State.TOLERANCE
    states = [e.to_state for e in session.controller.events]
    assert State.PAUSED in states and states[-1] is State.TOLERANCE
    session.close()


def test_pause_elsewhere_stops_with_the_time_to_restart(tmp_path: Path) -> None:
    sleeps: list[float] = []
    session, clock, refresher = _session(tmp_path, 3, pause_in_place=False, sleeps=sleeps)
    saved: list[int] = []
    stops = []
    for step in range(1, 5):
        clock.at_step(step)
        refresher.refresh_once()
        stops.append(session.after_step(step, lambda step=step: saved.append(step)))
        if stops[-1] is not None:
            break
    stop = stops[-1]
    assert stop is not None and stop.outcome is Outcome.PAUSED and stop.step == 3
    assert stop.until_s is not None and stop.until_s > clock()
    assert saved == [3] and sleeps == []
    assert stop.to_dict()["outcome"] == "paused"
    session.close(status=RunStatus.PAUSED)


def test_failed_checkpoint_keeps_training_here(tmp_path: Path) -> None:
    config = sc.make_config(tmp_path)
    clock = sc.VirtualClock()
    controller, refresher = sc.make_controller(config, sc.make_trace((2, 20, 30)), clock)
    session = ControllerSession(controller, refresher_thread=False)
    session.start()

    def broken_save() -> None:
        raise OSError("disk full")

    clock.at_step(2)
    refresher.refresh_once()
    assert session.after_step(2, broken_save) is None  # no checkpoint, no move
    assert session.checkpoints_taken == 0
    assert controller.site == "site-a"
    session.close()


def test_a_preemption_checkpoints_through_the_controller_then_stops(tmp_path: Path) -> None:
    config = sc.make_config(tmp_path)
    clock = sc.VirtualClock()
    controller, refresher = sc.make_controller(config, sc.make_trace((20, 21, 30)), clock)
    dispatched: list[object] = []
    dispatch = controller._run_actions

    def run_actions(actions: tuple[object, ...], now: float) -> None:
        dispatched.extend(actions)
        dispatch(actions, now)

    controller._run_actions = run_actions  # type: ignore[method-assign]
    session = ControllerSession(controller, refresher_thread=False)
    session.start()
    saved: list[int] = []
    clock.at_step(1)
    refresher.refresh_once()
    assert session.after_step(1, lambda: saved.append(1)) is None
    state, events = controller.state, len(controller.events)
    session.preempt_requested = True
    clock.at_step(2)
    stop = session.after_step(2, lambda: saved.append(2))
    assert stop is not None and (stop.outcome, stop.step) == (Outcome.PREEMPTED, 2)
    assert saved == [2] and session.checkpoints_taken == 1
    assert Preempt() in dispatched  # an action of the table, run by the dispatcher
    assert controller.state is state and len(controller.events) == events  # no transition
    session.close(status="preempted")


def test_a_preemption_whose_checkpoint_fails_raises(tmp_path: Path) -> None:
    config = sc.make_config(tmp_path)
    controller, _ = sc.make_controller(config, sc.make_trace((20, 21, 30)), sc.VirtualClock())
    session = ControllerSession(controller, refresher_thread=False)
    session.start()
    session.preempt_requested = True

    def broken_save() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):  # never a PREEMPTED stop without its save
        session.after_step(1, broken_save)
    assert session.checkpoints_taken == 0
    session.close(status="failed")


@pytest.mark.slow
def test_example_runs_alone_and_stops_to_move(tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    example = (REPO / "examples" / "job.yaml").read_text()
    config.write_text(example.replace("../.caftm", str(tmp_path)))
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "train_cnn.py"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "CAFTM_CHECKPOINT_URL": str(tmp_path / "ckpt")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # alone, KR (about 490 g/kWh, above θ) is left for a cleaner site: the script stops there
    assert "moved at step" in done.stdout
    assert "checkpoint complete, moving to" in done.stderr
    assert (tmp_path / "ledger.sqlite").exists()


def test_gpu_without_permission_trains_at_defaults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import dataclasses

    import torch

    from caftm.gpu.base import DeviceInfo
    from caftm.gpu.simulated import SimulatedBackend
    from caftm.integrations.torch import CarbonAwareTraining

    class NoPermission(SimulatedBackend):
        def info(self, index: int) -> DeviceInfo:
            return dataclasses.replace(super().info(index), can_set=False)

    config = sc.make_config(tmp_path / "store")
    controller, _ = sc.make_controller(config, sc.make_trace(), sc.VirtualClock())
    model = torch.nn.Linear(2, 1)
    with (
        caplog.at_level("WARNING", logger="caftm.notice"),
        CarbonAwareTraining(
            config,
            model=model,
            controller=controller,
            gpu=NoPermission(),
            refresher_thread=False,
            knob_state_dir=tmp_path / "knob",
        ) as caftm,
    ):
        caftm.step()
    # observe only: the meter still runs, no setter is ever called
    assert caftm.gpu is not None and not caftm.controls_gpu and caftm.steps_done == 1
    assert caftm.gpu.knob._originals is None  # the knob was never started
    assert "may not change GPU settings" in caplog.text
    assert "falling back to gpu.control: off" in caplog.text


def _break_by_closing(ledger: Ledger) -> None:
    ledger.close()


def _break_from_another_connection(ledger: Ledger) -> None:
    with sqlite3.connect(ledger.path) as other:
        other.execute("DROP TABLE runs")


LEDGER_BREAKS = {
    "closed": _break_by_closing,
    "runs table gone": _break_from_another_connection,
}


def _controller_with_broken_ledger(tmp_path: Path, how: str) -> Controller:
    """A controller whose ledger opened fine but cannot record the run's start."""
    config = sc.make_config(tmp_path / "store")
    clock = sc.VirtualClock()
    refresher = IntensityRefresher(
        sc.make_trace(), config.site_zones(), config.start_site, clock=clock
    )
    ledger = Ledger(tmp_path / "ledger.sqlite")
    LEDGER_BREAKS[how](ledger)
    return Controller(
        make_policy(config.policy.name, config.rules()),
        refresher,
        threshold=config.threshold_spec(),
        total_steps=config.total_steps,
        clock=clock,
        ledger=ledger,
        simulated=True,
    )


def _caftm_threads() -> set[threading.Thread]:
    """Live caftm threads, but for the hashing pool (shared, and kept for the process)."""
    return {
        t
        for t in threading.enumerate()
        if t.name.startswith("caftm") and not t.name.startswith("caftm-sha256")
    }


@pytest.mark.parametrize("how", list(LEDGER_BREAKS))
def test_failed_start_leaves_no_refresher_thread(tmp_path: Path, how: str) -> None:
    before = _caftm_threads()
    controller = _controller_with_broken_ledger(tmp_path, how)
    knob = GpuKnob(SimulatedBackend(), state_dir=tmp_path / "knob", handle_signals=False)
    session = ControllerSession(controller, knob=knob, refresher_thread=True)
    with pytest.raises(LedgerError, match="cannot write ledger"):
        session.start()
    assert _caftm_threads() == before
    assert not any(t.name == "caftm-intensity" for t in threading.enumerate())
    session.close(status=RunStatus.FAILED)  # still safe to call


def test_failed_start_of_the_torch_integration_stops_its_threads(tmp_path: Path) -> None:
    import dataclasses

    from caftm.gpu import EnergyMeter
    from caftm.integrations._gpu import GpuSetup
    from caftm.integrations.torch import CarbonAwareTraining

    before = _caftm_threads()
    config = sc.make_config(tmp_path / "store")
    gpu = GpuSetup.from_config(config, SimulatedBackend(), knob_state_dir=tmp_path / "knob")
    gpu = dataclasses.replace(
        gpu, meter=EnergyMeter(gpu.backend, sampling="thread")
    )  # as on hardware
    controller = _controller_with_broken_ledger(tmp_path, "closed")
    training = CarbonAwareTraining(
        config,
        model=nn.Linear(2, 1),
        controller=controller,
        gpu=gpu,
        refresher_thread=True,
    )
    with pytest.raises(LedgerError, match="cannot write ledger"), training:
        pytest.fail("the block must not run when starting failed")
    assert _caftm_threads() == before


def test_gpu_control_off_meters_energy_and_never_calls_a_setter(tmp_path: Path) -> None:
    from caftm.gpu.base import KnobKind
    from caftm.integrations.torch import CarbonAwareTraining

    class Counting(SimulatedBackend):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[tuple[int, KnobKind, float | None]] = []

        def set(self, index: int, knob: KnobKind, value: float) -> None:
            self.writes.append((index, knob, value))
            super().set(index, knob, value)

        def reset(self, index: int, knob: KnobKind) -> None:
            self.writes.append((index, knob, None))
            super().reset(index, knob)

    from caftm.integrations._gpu import GpuSetup

    backend = Counting()
    base = sc.make_config(tmp_path / "store", total_steps=60)
    config = base.model_copy(update={"gpu": base.gpu.model_copy(update={"control": "off"})})
    setup = GpuSetup.from_config(config, backend, knob_state_dir=tmp_path / "knob")
    clock = sc.VirtualClock()
    refresher = IntensityRefresher(
        sc.make_trace(), config.site_zones(), config.start_site, clock=clock
    )
    controller = Controller(
        make_policy(config.policy.name, config.rules()),
        refresher,
        threshold=config.threshold_spec(),
        total_steps=60,
        clock=clock,
        meter=setup.meter,
        optimizer=setup.optimizer,
        weights=setup.weights,
        window_steps=10,
        simulated=True,
    )
    with CarbonAwareTraining(
        config,
        model=nn.Linear(2, 1),
        controller=controller,
        gpu=setup,
        refresher_thread=False,
    ) as caftm:
        while caftm.running:
            clock.at_step(caftm.steps_done + 1)
            caftm.step()
    assert not caftm.controls_gpu
    assert backend.writes == []  # not one setter call, not even a restore
    assert controller.energy_j > 0  # the meter still measured every window
