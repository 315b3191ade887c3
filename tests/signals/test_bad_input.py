"""Odd trace files and times: each gives one DataError/ConfigError naming what and where."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caftm.errors import ConfigError, DataError
from caftm.signals.base import Basis, Kind, Reading, as_utc
from caftm.signals.cache import ReadingCache
from caftm.signals.traces import load_trace

T0 = datetime(2022, 1, 1, tzinfo=UTC)


def test_a_header_only_csv_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("datetime_utc,FR\n")
    with pytest.raises(DataError, match=r"header\.csv: no data rows"):
        load_trace(path)


def test_an_empty_parquet_table_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    table = pa.table(
        {
            "datetime_utc": pa.array([], pa.timestamp("s", tz="UTC")),
            "FR": pa.array([], pa.float64()),
        }
    )
    pq.write_table(table, path)
    with pytest.raises(DataError, match=r"empty\.parquet: no data rows"):
        load_trace(path)


@pytest.mark.parametrize(
    "rows",
    [
        # a mistyped year: two hourly rows, then 9022 instead of 2022
        ["2022-01-01T00:00,50", "2022-01-01T01:00,50", "9022-01-01T00:00,60"],
        # a one-second step over ten years
        ["2022-01-01T00:00:00,50", "2022-01-01T00:00:01,50", "2032-01-01T00:00:00,60"],
    ],
)
def test_a_grid_too_large_to_hold_is_refused_before_allocating(
    tmp_path: Path, rows: list[str]
) -> None:
    path = tmp_path / "typo.csv"
    path.write_text("datetime_utc,FR\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"typo\.csv: times from 2022-01-01.*too many"):
        load_trace(path)


def test_a_directory_is_not_called_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is a directory"):
        load_trace(tmp_path)


def test_parquet_null_time_names_the_row(tmp_path: Path) -> None:
    path = tmp_path / "nulls.parquet"
    times = pa.array([T0, None, T0 + timedelta(hours=2)], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"datetime_utc": times, "FR": pa.array([1.0, 2.0, 3.0])}), path)
    with pytest.raises(DataError, match=r"nulls\.parquet row 2: column 'datetime_utc' has no time"):
        load_trace(path)


def test_parquet_sub_second_times_are_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "ms.parquet"
    times = pa.array([T0 + timedelta(milliseconds=500), T0 + timedelta(hours=1)])
    pq.write_table(pa.table({"datetime_utc": times, "FR": pa.array([1.0, 2.0])}), path)
    with pytest.raises(DataError, match=r"ms\.parquet: column 'datetime_utc'.*fractions"):
        load_trace(path)


@pytest.mark.parametrize(
    "time",
    [
        datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_a_time_outside_the_utc_calendar_is_a_config_error(time: datetime) -> None:
    with pytest.raises(ConfigError, match=r"when .* outside the years 1\.\.9999"):
        as_utc(time, what="when")


def test_a_cache_damaged_after_opening_is_one_config_error(tmp_path: Path) -> None:
    path = tmp_path / "signals.sqlite"
    cache = ReadingCache(path)
    hours = range(5000)
    cache.put(
        Reading("DE", T0 + timedelta(hours=h), 100.0, Basis.LIFECYCLE, Kind.MEASURED, "em")
        for h in hours
    )
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    with path.open("r+b") as handle:  # overwrite pages in the middle of the table
        handle.seek(4 * 4096)
        handle.write(b"\xde\xad" * 4096)
    with pytest.raises(ConfigError, match=rf"signal cache {path} cannot be used: .*malformed"):
        cache.get("em", "DE", T0, T0 + timedelta(hours=len(hours)))
    with pytest.raises(ConfigError, match=r"cannot be used"):
        cache.count()
