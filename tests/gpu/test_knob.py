"""GpuKnob against the simulated GPU: set, snap, dry-run, refusals, and restore on every exit path.

The simulated backend persists its device settings to a JSON file (``state_path``), so a child
process can change a "device" and this process can check what it left behind.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from caftm.errors import DeviceError, PermissionDeniedError
from caftm.gpu.base import DeviceInfo, KnobKind
from caftm.gpu.knob import GpuKnob, knob_session, recover_stale
from caftm.gpu.nvml import PERMISSION_MESSAGE, has_set_permission
from caftm.gpu.simulated import SimulatedBackend

CLOCK = KnobKind.CLOCK
POWER = KnobKind.POWER


class CountingBackend(SimulatedBackend):
    """The simulated GPU, counting the setter calls that reach the hardware edge."""

    def __init__(
        self, *args: object, can_set: bool = True, mig: bool = False, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.writes: list[tuple[int, KnobKind, float | None]] = []
        self._can_set = can_set
        self._mig = mig

    def info(self, index: int) -> DeviceInfo:
        return dataclasses.replace(
            super().info(index), can_set=self._can_set and not self._mig, mig_enabled=self._mig
        )

    def set(self, index: int, knob: KnobKind, value: float) -> None:
        self.writes.append((index, knob, value))
        super().set(index, knob, value)

    def reset(self, index: int, knob: KnobKind) -> None:
        self.writes.append((index, knob, None))
        super().reset(index, knob)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "knob-state"


def test_clock_set_then_restored_on_normal_exit(state_dir: Path) -> None:
    backend = CountingBackend(device_count=2)
    with knob_session(backend, [0, 1], "clock", state_dir=state_dir) as knob:
        assert knob.set(1410) == 1410.0
        assert backend.get(0, CLOCK) == backend.get(1, CLOCK) == 1410.0
        assert knob.current() == {0: 1410.0, 1: 1410.0}
        assert len(list(state_dir.glob("knob-*.json"))) == 1
    assert backend.get(0, CLOCK) is None and backend.get(1, CLOCK) is None
    assert list(state_dir.glob("knob-*.json")) == []


def test_power_limit_restored_on_exception_to_the_original_not_the_default(state_dir: Path) -> None:
    backend = CountingBackend()
    backend.set(0, POWER, 600.0)
    with (
        pytest.raises(RuntimeError, match="boom"),
        knob_session(backend, [0], POWER, state_dir=state_dir) as knob,
    ):
        knob.set(450)
        assert backend.get(0, POWER) == 450.0
        raise RuntimeError("boom")
    assert backend.get(0, POWER) == 600.0


def test_locked_clock_of_before_is_restored(state_dir: Path) -> None:
    backend = CountingBackend()
    backend.set(0, CLOCK, 1500)
    with knob_session(backend, [0], CLOCK, state_dir=state_dir) as knob:
        knob.set(1200)
    assert backend.get(0, CLOCK) == 1500.0


def test_unsupported_value_lists_the_range_and_snap_is_explicit(state_dir: Path) -> None:
    backend = CountingBackend()
    with knob_session(backend, [0], CLOCK, state_dir=state_dir) as knob:
        with pytest.raises(
            DeviceError, match=r"1234 MHz is not a supported clock .*345-1980 MHz \(110 values\)"
        ):
            knob.set(1234)
        assert backend.writes == []
        assert knob.set(1234, snap=True) == 1230.0
        assert backend.get(0, CLOCK) == 1230.0
    with knob_session(backend, [0], POWER, state_dir=state_dir) as knob:
        with pytest.raises(DeviceError, match="200-700 W"):
            knob.set(1000)
        assert knob.set(437, snap=True) == 425.0


def test_setters_skip_writes_that_change_nothing(state_dir: Path) -> None:
    backend = CountingBackend()
    with knob_session(backend, [0], CLOCK, state_dir=state_dir) as knob:
        knob.set(1410)
        knob.set(1410)
        knob.set(1410.0)
    assert backend.writes == [(0, CLOCK, 1410.0), (0, CLOCK, None)]
    with knob_session(backend, [0], POWER, state_dir=state_dir) as knob:
        knob.set(700)  # already the limit
    assert len(backend.writes) == 2


def test_dry_run_logs_and_never_calls_a_setter(
    state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = CountingBackend(can_set=False)  # dry-run needs no permission
    caplog.set_level(logging.INFO, logger="caftm.gpu.knob")
    with knob_session(backend, [0], CLOCK, dry_run=True, state_dir=state_dir) as knob:
        assert knob.set(1005) == 1005.0
        assert knob.current() == {0: 1005.0}
    assert backend.writes == []
    assert backend.get(0, CLOCK) is None
    assert "dry run: would set GPU 0 clock to 1005 MHz" in caplog.text
    assert "dry run: would restore GPU 0 clock to unlocked" in caplog.text
    assert not state_dir.exists() or list(state_dir.iterdir()) == []


def test_permission_refusal_message(state_dir: Path) -> None:
    backend = CountingBackend(can_set=False)
    with (
        pytest.raises(PermissionDeniedError) as caught,
        knob_session(backend, [0], CLOCK, state_dir=state_dir),
    ):
        pass
    assert str(caught.value) == f"GPU 0: {PERMISSION_MESSAGE}"
    assert "changing GPU clocks/power limits needs root or CAP_SYS_ADMIN" in str(
        caught.value
    ) and "set `gpu.control: off`" in str(caught.value)
    assert backend.writes == []


def test_capability_detection_reads_cap_sys_admin(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nCapEff:\t0000000000200000\n")  # bit 21 only
    assert has_set_permission(status, euid=1000)
    status.write_text("Name:\tpython\nCapEff:\t00000000001fffff\n")  # everything below bit 21
    assert not has_set_permission(status, euid=1000)
    assert has_set_permission(tmp_path / "absent", euid=0)
    assert not has_set_permission(tmp_path / "absent", euid=1000)


def test_mig_is_refused(state_dir: Path) -> None:
    backend = CountingBackend(mig=True)
    with (
        pytest.raises(DeviceError, match="GPU 0 is in MIG mode"),
        knob_session(backend, [0], POWER, state_dir=state_dir),
    ):
        pass


def test_unknown_gpu_index_is_a_clear_error(state_dir: Path) -> None:
    with (
        pytest.raises(DeviceError, match="unknown GPU index 5"),
        knob_session(SimulatedBackend(), [5], CLOCK, state_dir=state_dir),
    ):
        pass


def test_sigterm_in_process_restores_then_chains_the_previous_handler(state_dir: Path) -> None:
    backend = CountingBackend()
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        knob = GpuKnob(backend, [0], CLOCK, state_dir=state_dir).start()
        knob.set(900)
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGTERM]
        assert backend.get(0, CLOCK) is None
        knob.close()
        assert signal.getsignal(signal.SIGTERM) is not None
        os.kill(os.getpid(), signal.SIGTERM)  # our handler is gone again: only the chained one runs
        assert seen == [signal.SIGTERM, signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from caftm.gpu.knob import GpuKnob
    from caftm.gpu.simulated import SimulatedBackend

    mode, device_file, state_dir = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    # Python's usual SIGINT handler, even when started from a shell that ignores SIGINT
    signal.signal(signal.SIGINT, signal.default_int_handler)
    backend = SimulatedBackend(state_path=device_file)
    with GpuKnob(backend, [0], "clock", state_dir=state_dir) as knob:
        knob.set(1410)
        print("ready", flush=True)
        if mode != "wait":
            sys.stdin.readline()  # the parent has seen the setting: go on
        if mode == "raise":
            raise RuntimeError("training crashed")
        if mode == "wait":
            time.sleep(60)
    """
)


def _child(mode: str, tmp_path: Path, state_dir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, mode, str(tmp_path / "device.json"), str(state_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _device_clock(tmp_path: Path) -> float | None:
    return SimulatedBackend(state_path=tmp_path / "device.json").get(0, CLOCK)


@pytest.mark.parametrize(
    ("mode", "sig", "returncode"),
    [
        ("exit", None, 0),
        ("raise", None, 1),
        ("wait", signal.SIGTERM, -signal.SIGTERM),
        ("wait", signal.SIGINT, -signal.SIGINT),
    ],
    ids=["normal-exit", "exception", "sigterm", "sigint"],
)
def test_child_process_restores_on_every_exit_path(
    mode: str, sig: signal.Signals | None, returncode: int, tmp_path: Path, state_dir: Path
) -> None:
    child = _child(mode, tmp_path, state_dir)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    assert _device_clock(tmp_path) == 1410.0  # the child really changed the device
    if sig is not None:
        child.send_signal(sig)
    _, stderr = child.communicate(input="go\n", timeout=30)
    assert child.returncode == returncode, stderr
    assert _device_clock(tmp_path) is None
    assert list(state_dir.glob("knob-*.json")) == []
    assert json.loads((tmp_path / "device.json").read_text())["devices"][0]["clock_mhz"] is None


def test_sigkill_leaves_a_state_file_that_the_next_start_restores(
    tmp_path: Path, state_dir: Path
) -> None:
    child = _child("wait", tmp_path, state_dir)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.kill()
    child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    backend = SimulatedBackend(state_path=tmp_path / "device.json")
    assert backend.get(0, CLOCK) == 1410.0  # stale: nobody could restore it
    stale = list(state_dir.glob("knob-*.json"))
    assert len(stale) == 1
    assert recover_stale(backend, state_dir, dry_run=True) == 0  # dry run only logs
    assert backend.get(0, CLOCK) == 1410.0
    with knob_session(backend, [0], CLOCK, state_dir=state_dir) as knob:  # start() recovers
        assert backend.get(0, CLOCK) is None
        assert knob.current() == {0: None}
    assert _device_clock(tmp_path) is None
    assert list(state_dir.glob("knob-*.json")) == []


def test_state_files_of_live_processes_are_left_alone(tmp_path: Path, state_dir: Path) -> None:
    backend = SimulatedBackend(state_path=tmp_path / "device.json")
    knob = GpuKnob(backend, [0], CLOCK, state_dir=state_dir, handle_signals=False).start()
    knob.set(1005)
    other = SimulatedBackend(state_path=tmp_path / "device.json")
    assert recover_stale(other, state_dir) == 0  # this process is alive: not stale
    assert other.get(0, CLOCK) == 1005.0
    (state_dir / "knob-garbage.json").write_text("{not json")
    assert recover_stale(other, state_dir) == 0  # unreadable files are skipped with a warning
    knob.close()
    assert _device_clock(tmp_path) is None


class ClockBlindBackend(SimulatedBackend):
    """Like NVML: a fresh process cannot read a clock lock another process set."""

    def get(self, index: int, knob: KnobKind) -> float | None:
        return None if knob is CLOCK else super().get(index, knob)


def test_stale_lock_is_undone_even_when_the_backend_cannot_read_it(
    tmp_path: Path, state_dir: Path
) -> None:
    child = _child("wait", tmp_path, state_dir)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.kill()
    child.communicate(timeout=30)
    assert _device_clock(tmp_path) == 1410.0
    blind = ClockBlindBackend(state_path=tmp_path / "device.json")
    assert recover_stale(blind, state_dir) == 1
    assert _device_clock(tmp_path) is None


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_values_are_refused_even_with_snap(state_dir: Path, value: float) -> None:
    backend = CountingBackend()
    with knob_session(backend, [0], CLOCK, state_dir=state_dir) as knob:
        for snap in (False, True):
            with pytest.raises(DeviceError, match="not a valid clock setting"):
                knob.set(value, snap=snap)
    assert backend.writes == []


def test_unwritable_state_dir_is_a_device_error_and_nothing_is_set(tmp_path: Path) -> None:
    backend = CountingBackend()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with (
        knob_session(backend, [0], CLOCK, state_dir=blocker) as knob,
        pytest.raises(DeviceError, match="cannot write the knob state file"),
    ):
        knob.set(1410)
    assert backend.writes == [] and backend.get(0, CLOCK) is None


@pytest.mark.parametrize(
    "text",
    [
        "[1, 2]",
        '{"host": "%s", "backend": "simulated", "pid": 999999999, "kind": "clock", '
        '"originals": [{"index": 0, "value": "fast"}]}',
    ],
)
def test_malformed_stale_state_files_are_skipped(state_dir: Path, text: str) -> None:
    import socket

    state_dir.mkdir(parents=True)
    bad = state_dir / "knob-simulated-clock-1-bad.json"
    bad.write_text(text.replace("%s", socket.gethostname()))
    backend = CountingBackend()
    assert recover_stale(backend, state_dir) == 0
    with knob_session(backend, [0], CLOCK, state_dir=state_dir) as knob:  # start() recovers too
        knob.set(1410)
    assert backend.get(0, CLOCK) is None and bad.exists()
