"""Trace files: formats, UTC handling, gaps, resampling, look-ups and bad input."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.conftest import shared_file

from caftm.errors import ConfigError, DataError, ProviderError
from caftm.signals.base import Basis, Kind
from caftm.signals.traces import TraceSource, load_trace

from .conformance import IntensitySourceConformance

T0 = datetime(2022, 3, 1, tzinfo=UTC)
EM_HEADER = (
    "Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
    "Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,"
    "Data Source,Data Estimated,Data Estimation Method"
)


def em_rows(zone: str, start: datetime, values: list[tuple[float, float, bool]]) -> list[str]:
    rows = []
    for i, (direct, lca, estimated) in enumerate(values):
        when = (start + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S")
        flag = "true" if estimated else "false"
        rows.append(f"{when},X,{zone} name,{zone},{direct},{lca},50,40,src,{flag},")
    return rows


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def wide_csv(tmp_path: Path, name: str = "wide.csv", header: str = "datetime_utc,DE,FR") -> Path:
    lines = [header]
    for i in range(48):
        when = (T0 + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(f"{when},{400 + i},{50 + i % 24}")
    return write(tmp_path / name, lines)


# -- formats ---------------------------------------------------------------------------------


def test_electricitymaps_export_lifecycle_default_and_direct_on_request(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ES_2022_hourly.csv",
        [EM_HEADER, *em_rows("ES", T0, [(100.0, 140.0, False), (110.0, 150.5, True)])],
    )
    trace = load_trace(path)
    assert trace.zones() == ["ES"] and trace.step_s == 3600 and trace.start == T0
    first, second = trace.history("ES", T0, T0 + timedelta(hours=2))
    assert (first.intensity_g_per_kwh, second.intensity_g_per_kwh) == (140.0, 150.5)
    assert first.basis is Basis.LIFECYCLE and first.kind is Kind.MEASURED
    assert second.kind is Kind.ESTIMATED
    assert first.time.tzinfo is not None and first.time.utcoffset() == timedelta(0)
    direct = load_trace(path, basis=Basis.DIRECT)
    assert direct.intensity("ES", T0).intensity_g_per_kwh == 100.0
    assert direct.intensity("ES", T0).basis is Basis.DIRECT


def test_several_files_and_zones_concatenate(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", [EM_HEADER, *em_rows("NO", T0, [(1, 20, False)] * 3)])
    b = write(
        tmp_path / "b.csv",
        [EM_HEADER, *em_rows("NO", T0 + timedelta(hours=3), [(1, 30, False)] * 2)],
    )
    c = write(tmp_path / "c.csv", [EM_HEADER, *em_rows("BR", T0, [(5, 60, False)] * 5)])
    trace = load_trace([a, b, c])
    assert trace.zones() == ["NO", "BR"]
    assert trace.n_steps == 5
    np.testing.assert_array_equal(trace.series("NO"), [20, 20, 20, 30, 30])
    assert trace.gaps() == []


def test_wide_csv_and_long_csv(tmp_path: Path) -> None:
    trace = load_trace(wide_csv(tmp_path))
    assert trace.zones() == ["DE", "FR"] and trace.n_steps == 48
    assert trace.intensity("DE", T0 + timedelta(hours=5, minutes=30)).intensity_g_per_kwh == 405
    long = write(
        tmp_path / "long.csv",
        [
            "zone,datetime,intensity_g_per_kwh",
            "KR,2022-01-01T00:00:00Z,490",
            "KR,2022-01-01T01:00:00+00:00,495.5",
            "JP-TK,2022-01-01T09:00:00+09:00,555",
        ],
    )
    trace = load_trace(long)
    assert trace.zones() == ["KR", "JP-TK"]
    jan1 = datetime(2022, 1, 1, tzinfo=UTC)
    assert trace.intensity("JP-TK", jan1).intensity_g_per_kwh == 555
    assert trace.intensity("KR", jan1 + timedelta(hours=1)).intensity_g_per_kwh == 495.5


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_parquet_long_and_wide(tmp_path: Path, layout: str) -> None:
    times = [T0 + timedelta(hours=i) for i in range(24)]
    de = [300.0 + i for i in range(24)]
    if layout == "wide":
        table = pa.table({"time": pa.array(times, pa.timestamp("s", tz="UTC")), "DE": de})
    else:
        table = pa.table(
            {
                "zone": ["DE"] * 24,
                "timestamp": pa.array(times, pa.timestamp("ms", tz="UTC")),
                "intensity_g_per_kwh": de,
            }
        )
    path = tmp_path / f"{layout}.parquet"
    pq.write_table(table, path)
    trace = load_trace(path)
    np.testing.assert_array_equal(trace.series("DE"), de)
    assert trace.start == T0


def test_parquet_naive_timestamps_refused_unless_named_utc(tmp_path: Path) -> None:
    times = [datetime(2022, 1, 1) + timedelta(hours=i) for i in range(3)]
    path = tmp_path / "naive.parquet"
    pq.write_table(
        pa.table({"timestamp": pa.array(times, pa.timestamp("s")), "DE": [1, 2, 3]}), path
    )
    with pytest.raises(ConfigError, match=r"naive\.parquet.*without timezone"):
        load_trace(path)
    named = tmp_path / "named.parquet"
    pq.write_table(
        pa.table({"datetime_utc": pa.array(times, pa.timestamp("s")), "DE": [1, 2, 3]}), named
    )
    assert load_trace(named).start == datetime(2022, 1, 1, tzinfo=UTC)


def test_real_export_files() -> None:
    first = shared_file("carbon/electricitymaps_export/ES_2021_hourly.csv")
    files = sorted(first.parent.glob("*_hourly.csv"))
    trace = load_trace(files)
    assert set(trace.zones()) == {"BR", "ES", "NO", "US-CAL-CISO"}
    assert trace.start == datetime(2021, 1, 1, tzinfo=UTC) and trace.step_s == 3600
    assert trace.n_steps == 2 * 8760
    es = trace.history("ES", datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, 2, tzinfo=UTC))
    assert es[0].intensity_g_per_kwh == 175.54  # the LCA column of the first 2022 row
    assert 100 < float(np.nanmean(trace.series("ES"))) < 300


def test_real_wide_csv() -> None:
    trace = load_trace(shared_file("carbon/ci_2022_hourly_lca_123zones.csv"), zones=["KR", "FR"])
    assert trace.zones() == ["KR", "FR"] and trace.n_steps == 8760
    assert abs(float(trace.series("KR").mean()) - 491) < 2
    assert trace.gaps() == []


# -- UTC and bad input -----------------------------------------------------------------------


def test_naive_csv_times_refused_without_utc_header(tmp_path: Path) -> None:
    path = wide_csv(tmp_path, header="datetime,DE,FR")
    with pytest.raises(ConfigError, match=r"wide\.csv line 2: .*no timezone"):
        load_trace(path)


def test_offsets_are_converted_to_utc(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.csv",
        ["timestamp,DE", "2022-01-01T01:00:00+01:00,100", "2022-01-01T02:00:00+01:00,110"],
    )
    trace = load_trace(path)
    assert trace.start == datetime(2022, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("lines", "pattern"),
    [
        (["datetime_utc,DE", "2022-01-01 00:00:00,12x"], r"bad\.csv line 2: column 'DE': '12x'"),
        (
            ["datetime_utc,DE", "2022-01-01 00:00:00,1", "2022-01-01 01:00:00,-3"],
            r"bad\.csv line 3: column 'DE': intensity -3",
        ),
        (["datetime_utc,DE", "2022-01-01 00:00:00,2600"], r"line 2: .*2600 .*implausible"),
        (
            ["datetime_utc,DE", "2022-01-01 00:00:00,1", "2022-01-01 00:00:00,2"],
            r"line 3: duplicate time",
        ),
        (
            ["datetime_utc,DE", "2022-01-01 02:00:00,1", "2022-01-01 01:00:00,2"],
            r"line 3: out-of-order time",
        ),
        (["datetime_utc,DE", "yesterday,1"], r"line 2: column 'datetime_utc': cannot read time"),
        (["when,DE", "2022-01-01T00:00:00Z,1"], r"bad\.csv: no time column"),
        (["datetime_utc,DE", "2022-01-01 00:00:00,1,2"], r"line 2: 3 field\(s\)"),
        (  # blank rows are skipped but still counted in line numbers
            ["datetime_utc,DE", "", "2022-01-01 00:00:00,1", " , ", "2022-01-01 01:00:00,x"],
            r"bad\.csv line 5: column 'DE': 'x'",
        ),
        (["datetime_utc,DE", ",", "", "2022-01-01 00:00:00,1,2"], r"line 4: 3 field\(s\)"),
        (["zone,datetime_utc", "DE,2022-01-01 00:00:00"], r"no intensity column"),
    ],
)
def test_malformed_files_name_path_and_line(tmp_path: Path, lines: list[str], pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        load_trace(write(tmp_path / "bad.csv", lines))


def test_missing_file_and_duplicate_across_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_trace(tmp_path / "nope.csv")
    a = write(tmp_path / "a.csv", [EM_HEADER, *em_rows("NO", T0, [(1, 20, False)] * 2)])
    b = write(tmp_path / "b.csv", [EM_HEADER, *em_rows("NO", T0, [(1, 20, False)] * 2)])
    with pytest.raises(DataError, match=r"b\.csv: zone NO has a second value"):
        load_trace([a, b])


def test_unknown_zone_lists_known_ones(tmp_path: Path) -> None:
    trace = load_trace(wide_csv(tmp_path))
    with pytest.raises(ConfigError, match=r"unknown zone 'XX'.*DE, FR"):
        trace.intensity("XX", T0)
    with pytest.raises(ConfigError, match=r"'XX'"):
        load_trace(wide_csv(tmp_path, "w2.csv"), zones=["XX"])


# -- gaps, resampling, look-ups --------------------------------------------------------------


def gappy(on_gap: str = "raise") -> TraceSource:
    values = np.array([[1.0, 2.0, np.nan, np.nan, 5.0, 6.0], [10, 20, 30, 40, 50, np.nan]])
    return TraceSource(["A", "B"], T0, 3600, values, on_gap=on_gap)  # type: ignore[arg-type]


def test_gaps_are_reported_not_filled(tmp_path: Path) -> None:
    trace = gappy()
    h = timedelta(hours=1)
    assert trace.gaps() == [("A", T0 + 2 * h, T0 + 4 * h), ("B", T0 + 5 * h, T0 + 6 * h)]
    with pytest.raises(ProviderError, match="gap for zone A"):
        trace.intensity("A", T0 + 2.5 * h)
    assert [r.time for r in trace.history("A", T0, T0 + 6 * h)] == [
        T0,
        T0 + h,
        T0 + 4 * h,
        T0 + 5 * h,
    ]
    held = gappy("hold").intensity("A", T0 + 3 * h)
    assert held.intensity_g_per_kwh == 2.0 and held.kind is Kind.ESTIMATED
    assert held.time == T0 + 3 * h and "held over gap" in held.source
    with pytest.raises(ProviderError, match="outside"):
        trace.intensity("A", T0 - h)
    empty_cells = write(
        tmp_path / "e.csv",
        [
            "datetime_utc,DE",
            "2022-01-01 00:00:00,1",
            "2022-01-01 01:00:00,",
            "2022-01-01 03:00:00,4",
        ],
    )
    loaded = load_trace(empty_cells)
    jan1 = datetime(2022, 1, 1, tzinfo=UTC)
    assert loaded.gaps() == [("DE", jan1 + h, jan1 + 3 * h)]


def test_resample_finer_linear_and_coarser_mean_keep_gaps() -> None:
    trace = gappy()
    fine = trace.resample(1800)
    assert fine.step_s == 1800
    np.testing.assert_allclose(fine.series("A")[:4], [1.0, 1.5, 2.0, np.nan])
    np.testing.assert_allclose(fine.series("B")[:3], [10, 15, 20])
    assert any(zone == "A" for zone, _, _ in fine.gaps())
    held = trace.resample(1800, method="hold")
    np.testing.assert_allclose(held.series("A")[:4], [1, 1, 2, 2])
    coarse = trace.resample(7200)
    np.testing.assert_allclose(coarse.series("A"), [1.5, np.nan, 5.5])
    np.testing.assert_allclose(coarse.series("B"), [15, 35, np.nan])
    assert coarse.gaps()[0][0] == "A"


@pytest.mark.parametrize("method", ["hold", "linear"])
def test_vectorised_lookup_equals_scalar(method: str) -> None:
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 800, size=(5, 200))
    values[2, 50:60] = np.nan
    trace = TraceSource([f"Z{i}" for i in range(5)], T0, 3600, values)
    rows = rng.integers(0, 5, 2000)
    times = trace.start_s + rng.uniform(-7200, 202 * 3600, 2000)
    fast = trace.lookup(rows, times, method=method)  # type: ignore[arg-type]
    for row, t, got in zip(rows, times, fast, strict=True):
        offset = (t - trace.start_s) / 3600
        if method == "hold":
            col = math.floor(offset)
            want = values[row, col] if 0 <= col < 200 else np.nan
        else:
            col = math.floor(offset)
            if not 0 <= offset <= 199:
                want = np.nan
            elif offset == col:
                want = values[row, col]
            else:
                frac = offset - col
                want = values[row, col] * (1 - frac) + values[row, col + 1] * frac
        if np.isnan(want):
            assert np.isnan(got)
        else:
            assert got == pytest.approx(want)
    inside = (times >= trace.start_s) & (times < trace.start_s + 200 * 3600)
    some = np.flatnonzero(inside & ~np.isnan(fast))[:20]
    for i in some:
        when = datetime.fromtimestamp(float(times[i]), UTC)
        if method == "hold":
            assert trace.intensity(f"Z{rows[i]}", when).intensity_g_per_kwh == fast[i]


def test_constructor_rejects_bad_shapes() -> None:
    with pytest.raises(ConfigError, match="shape"):
        TraceSource(["A"], T0, 3600, np.zeros((2, 3)))
    with pytest.raises(ConfigError, match="no timezone"):
        TraceSource(["A"], datetime(2022, 1, 1), 3600, np.zeros((1, 3)))


class TestTraceSourceConformance(IntensitySourceConformance):
    zone = "DE"
    unknown_zone = "XX"
    now = datetime(2022, 2, 20, 12, tzinfo=UTC)

    @pytest.fixture
    def source(self) -> TraceSource:
        hours = np.arange(24 * 60)
        de = 400 + 80 * np.sin(2 * np.pi * hours / 24)
        fr = 80 + 20 * np.cos(2 * np.pi * hours / 24)
        return TraceSource(["DE", "FR"], datetime(2022, 1, 1, tzinfo=UTC), 3600, [de, fr])
