"""The replay backend: real Zeus traces (skipped when absent), refusals, malformed files."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import shared_file

from caftm.errors import ConfigError, DataError, DeviceError
from caftm.gpu.base import KnobKind
from caftm.gpu.replay import ReplayBackend, load_traces, workloads

TRACE = "gpu/zeus_power_limit_traces/power_v100.csv"
KEY = "imagenet/resnet50/bs128/adadelta"


def test_loads_real_traces_and_lists_workloads() -> None:
    path = shared_file(TRACE)
    keys = workloads(path)
    assert KEY in keys and len(keys) > 50
    wl = load_traces(path)[KEY]
    assert wl.limits_w == [100.0, 125.0, 150.0, 175.0, 200.0, 225.0, 250.0]
    assert wl.steps_per_epoch == -(-1_281_167 // 128)


def test_measure_replays_the_trace_with_noise() -> None:
    path = shared_file(TRACE)
    backend = ReplayBackend(KEY, path=path, noise_rel=0.0)
    info = backend.info(0)
    assert info.simulated and info.power_limits_w == (100.0, 250.0)
    assert backend.supported(0, KnobKind.POWER) == [100.0, 125.0, 150.0, 175.0, 200.0, 225.0, 250.0]
    row = next(p for p in load_traces(path)[KEY].points if p[0] == 150.0)
    m = backend.measure(150.0, 40)
    assert m.knob is KnobKind.POWER
    assert m.step_time_s == pytest.approx(row[1] / backend.workload.steps_per_epoch)
    assert m.avg_power_w == pytest.approx(row[2])
    assert backend.now_s() == pytest.approx(m.time_s)
    noisy = ReplayBackend(KEY, path=path, noise_rel=0.02, seed=3).measure(150.0, 40)
    assert noisy.avg_power_w != pytest.approx(row[2], rel=1e-6)
    assert noisy.avg_power_w == pytest.approx(row[2], rel=0.1)


def test_clock_knob_and_untraced_limits_are_refused() -> None:
    backend = ReplayBackend(KEY, path=shared_file(TRACE))
    with pytest.raises(DeviceError, match="power limits only"):
        backend.set(0, KnobKind.CLOCK, 1200)
    with pytest.raises(DeviceError, match="power limits only"):
        backend.supported(0, KnobKind.CLOCK)
    with pytest.raises(DeviceError, match="traced limits"):
        backend.set(0, KnobKind.POWER, 130)
    with pytest.raises(ConfigError, match="not in replay trace"):
        ReplayBackend("mnist/lenet/bs1/sgd", path=shared_file(TRACE))


def test_duplicate_rows_are_averaged(tmp_path: Path) -> None:
    path = tmp_path / "power_test.csv"
    path.write_text(
        "dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power\n"
        "d,n,8,sgd,100,10,90\n"
        "d,n,8,sgd,100,12,110\n"
        "d,n,8,sgd,150,8,140\n"
    )
    wl = load_traces(path)["d/n/bs8/sgd"]
    assert wl.points == ((100.0, 11.0, 100.0), (150.0, 8.0, 140.0))
    assert wl.gpu == "TEST"


_HEADER = "dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("dataset,network\nd,n\n", "lacks column"),
        (_HEADER + "d,n,8,sgd,100,ten,90\n", "line 2"),
        (_HEADER + "d,n,8,sgd,100,-1,90\n", "positive"),
        (_HEADER, "no data"),
        (_HEADER + "d,n,8,sgd,inf,10,90\nd,n,8,sgd,150,8,140\n", "line 2.*finite"),
        (_HEADER + "d,n,8,sgd,100,10,90\nd,n,8,sgd,150,8,inf\n", "line 3.*finite"),
        (_HEADER + "d,n,-8,sgd,100,10,90\n", "line 2.*positive"),
        (_HEADER + "d,n,8,sgd,100,10\n", "line 2: too few fields"),
        (_HEADER + "d,n,8,sgd,100,10," + "9" * 200_000 + "\n", "line 2: malformed CSV"),
    ],
)
def test_malformed_trace_is_a_data_error(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "power_bad.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        load_traces(path)


def test_missing_trace_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read"):
        ReplayBackend(path=tmp_path / "absent.csv")


def test_binary_trace_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "power_bad.csv"
    path.write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(DataError, match="not a UTF-8 CSV"):
        load_traces(path)
