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


# -- rows without a value, formats people have, basis ------------------------------------------


@pytest.mark.parametrize("fmt", ["wide", "long", "export", "parquet"])
def test_rows_without_a_value_are_counted_and_placed_in_every_format(
    tmp_path: Path, fmt: str
) -> None:
    times = [(T0 + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(4)]
    cells = ["100", "NaN", "", "130"]
    if fmt == "wide":
        path = write(
            tmp_path / "w.csv",
            ["datetime_utc,DE", *[f"{t},{v}" for t, v in zip(times, cells, strict=True)]],
        )
        where = "line 3, line 4"
    elif fmt == "long":
        path = write(
            tmp_path / "l.csv",
            [
                "zone,datetime_utc,intensity_g_per_kwh",
                *[f"DE,{t},{v}" for t, v in zip(times, cells, strict=True)],
            ],
        )
        where = "line 3, line 4"
    elif fmt == "export":
        rows = em_rows(
            "DE",
            T0,
            [(1.0, 100.0, False), (1.0, 0.0, False), (1.0, 0.0, False), (1.0, 130.0, False)],
        )
        rows[1] = rows[1].replace(",0.0,", ",NaN,")
        rows[2] = rows[2].replace(",0.0,", ",,")
        path = write(tmp_path / "e.csv", [EM_HEADER, *rows])
        where = "line 3, line 4"
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "p.parquet"
        stamps = [T0 + timedelta(hours=i) for i in range(4)]
        table = pa.table({"datetime": pa.array(stamps, pa.timestamp("s", tz="UTC")),
                          "DE": pa.array([100.0, float("nan"), None, 130.0])})  # fmt: skip
        pq.write_table(table, path)
        where = "row 2, row 3"
    trace = load_trace(path)
    assert [r.intensity_g_per_kwh for r in trace.history("DE", T0, T0 + timedelta(hours=4))] == [
        100.0,
        130.0,
    ]
    notes = [n for n in trace.take_notes() if "no intensity" in n]
    assert notes == [
        f"{path.name}: 2 row(s) of zone DE have no intensity ({where}): kept as gaps, left out "
        "of history, never filled"
    ]


def test_date_and_hour_columns_are_read_as_utc(tmp_path: Path) -> None:
    path = write(
        tmp_path / "CAISO.csv",
        [
            "date,hour,carbon_intensity",
            "2021-01-01,0,250.5",
            "2021-01-01,1,240",
            "2021-01-01,23,230",
            "2021-01-02,0,220",
        ],
    )
    trace = load_trace(path)
    jan1 = datetime(2021, 1, 1, tzinfo=UTC)
    assert trace.zones() == ["CAISO"] and trace.step_s == 3600
    assert trace.intensity("CAISO", jan1 + timedelta(minutes=30)).intensity_g_per_kwh == 250.5
    assert trace.intensity("CAISO", jan1 + timedelta(hours=24)).intensity_g_per_kwh == 220
    notes = " | ".join(trace.take_notes())
    assert "taken as zone CAISO" in notes and "taken as UTC" in notes
    assert "not say direct or lifecycle: basis not stated" in notes


def test_hour_ending_files_run_1_to_24(tmp_path: Path) -> None:
    lines = ["date,hour,carbon_intensity", *[f"2021-01-01,{h},{100 + h}" for h in range(1, 25)]]
    trace = load_trace(write(tmp_path / "Z.csv", lines))
    assert trace.start == datetime(2021, 1, 1, tzinfo=UTC) and trace.n_steps == 24
    assert trace.intensity("Z", trace.start).intensity_g_per_kwh == 101
    assert any("hour ending" in n for n in trace.take_notes())
    with pytest.raises(DataError, match=r"Y\.csv line 2: column 'hour': hour 25 is outside"):
        load_trace(write(tmp_path / "Y.csv", ["date,hour,carbon_intensity", "2021-01-01,25,1"]))


@pytest.mark.parametrize("minutes", [15, 30])
def test_sub_hourly_series_are_averaged_to_hours_with_the_rule_said(
    tmp_path: Path, minutes: int
) -> None:
    per_hour = 60 // minutes
    lines = ["datetime_utc,GB"]
    for i in range(3 * per_hour):
        if i == per_hour + 1:  # one value of the second hour is missing
            continue
        lines.append(
            f"{(T0 + timedelta(minutes=minutes * i)).strftime('%Y-%m-%d %H:%M:%S')},{10 * i}"
        )
    trace = load_trace(write(tmp_path / "gb.csv", lines))
    assert trace.step_s == 3600 and trace.n_steps == 3
    expected_first = sum(10 * i for i in range(per_hour)) / per_hour
    assert trace.intensity("GB", T0).intensity_g_per_kwh == pytest.approx(expected_first)
    assert trace.gaps() == [("GB", T0 + timedelta(hours=1), T0 + timedelta(hours=2))]
    notes = " | ".join(trace.take_notes())
    assert f"{minutes}-minute values, averaged to 60-minute steps" in notes
    assert "a step missing any of them is a gap" in notes
    assert load_trace(write(tmp_path / "gb2.csv", lines), step_s=None).step_s == minutes * 60


def test_direct_and_lifecycle_columns_are_told_apart(tmp_path: Path) -> None:
    lines = ["datetime_utc,ci_direct,ci_lifecycle", "2022-03-01 00:00:00,300,400"]
    both = write(tmp_path / "FR.csv", lines)
    lifecycle = load_trace(both).intensity("FR", T0)
    direct = load_trace(both, basis=Basis.DIRECT).intensity("FR", T0)
    assert (lifecycle.intensity_g_per_kwh, lifecycle.basis) == (400, Basis.LIFECYCLE)
    assert (direct.intensity_g_per_kwh, direct.basis) == (300, Basis.DIRECT)
    only_direct = write(
        tmp_path / "DE.csv", ["datetime_utc,carbon_intensity_direct", "2022-03-01 00:00:00,310"]
    )
    reading = load_trace(only_direct).intensity("DE", T0)
    assert reading.basis is Basis.DIRECT
    with pytest.raises(DataError, match=r"DE\.csv holds direct and FR\.csv lifecycle"):
        load_trace(
            [
                only_direct,
                write(tmp_path / "FR.csv", ["datetime_utc,ci_lca", "2022-03-01 00:00:00,1"]),
            ]
        )
