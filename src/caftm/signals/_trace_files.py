"""Readers for trace files (CSV and Parquet, long or wide); used by :mod:`caftm.signals.traces`.

Each reader returns one :class:`RawSeries` per zone: sorted epoch seconds, values (NaN for an
empty cell) and, where the file says so, which values were estimated. Every problem raises
:class:`~caftm.errors.DataError` naming the file and the line (CSV) or row (Parquet).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeAlias

import numpy as np
import numpy.typing as npt

from caftm.errors import DataError
from caftm.signals.base import MAX_PLAUSIBLE_G_PER_KWH, Basis

TIME_COLUMNS = (
    "datetime (utc)",
    "datetime_utc",
    "time_utc",
    "timestamp_utc",
    "datetime",
    "timestamp",
    "time",
    "date",
)
ZONE_COLUMNS = ("zone id", "zone_id", "zone", "zone_key", "zonekey")
VALUE_COLUMNS = (
    "intensity_g_per_kwh",
    "carbon_intensity_g_per_kwh",
    "carbon_intensity",
    "carbonintensity",
    "intensity",
    "value",
)
EM_ESTIMATED = "data estimated"
_TRUE = {"true", "1", "yes", "t"}


@dataclass(frozen=True)
class RawSeries:
    """One zone's values as read from one file."""

    path: Path
    zone: str
    times_s: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    estimated: npt.NDArray[np.bool_] | None


_Column: TypeAlias = "list[str] | npt.NDArray[np.float64] | _Timestamps"
#: Describes row ``i`` of a file for error messages ("line 12" or "row 11").
Where = Callable[[int], str]


def read_trace_file(path: Path, *, basis: Basis) -> list[RawSeries]:
    """Read one CSV or Parquet trace file (format from suffix and header).

    Raises:
        DataError: the file is missing, unreadable or malformed.
    """
    if path.is_dir():
        raise DataError(f"trace file {path} is a directory; name the trace file inside it")
    if not path.is_file():
        raise DataError(f"trace file {path} does not exist; check the path")
    if path.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(path, basis=basis)
    return _read_csv(path, basis=basis)


# -- CSV -------------------------------------------------------------------------------------


def _read_csv(path: Path, *, basis: Basis) -> list[RawSeries]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"cannot read trace file {path}: {e}") from e
    if not rows:
        raise DataError(f"{path}: empty file; expected a header line")
    header = [name.strip() for name in rows[0]]
    body: list[list[str]] = []
    line_of: list[int] = []  # the file's line number of each body row (blank lines skipped)
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path} line {line}: {len(row)} field(s), header has {len(header)}")
        body.append(row)
        line_of.append(line)

    def where(i: int) -> str:
        return f"line {line_of[i]}"

    def strings(col: int) -> list[str]:
        return [row[col].strip() for row in body]

    def getter(col: int) -> Callable[[], _Column]:
        return lambda: strings(col)

    columns = {name: getter(c) for c, name in enumerate(header)}
    return _parse_columns(path, header, columns, where, basis=basis)


# -- Parquet ---------------------------------------------------------------------------------


def _read_parquet(path: Path, *, basis: Basis) -> list[RawSeries]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"cannot read Parquet trace {path}: {e}") from e
    header = list(table.column_names)

    def where(i: int) -> str:
        return f"row {i + 1}"

    def column(name: str) -> Callable[[], _Column]:
        def get() -> _Column:
            col = table.column(name)
            if pa.types.is_timestamp(col.type):
                zone_aware = col.type.tz is not None
                if col.null_count:
                    first = col.to_pylist().index(None)
                    raise DataError(f"{path} {where(first)}: column {name!r} has no time")
                try:
                    seconds = col.cast(pa.timestamp("s", tz=col.type.tz)).cast(pa.int64())
                except pa.ArrowInvalid as e:
                    raise DataError(
                        f"{path}: column {name!r} holds times with fractions of a second; "
                        "round them to whole seconds"
                    ) from e
                array = seconds.to_numpy().astype(np.int64)
                return _Timestamps(array, zone_aware)
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                return ["" if v is None else str(v) for v in col.to_pylist()]
            if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
                return np.asarray(col.cast(pa.float64()).to_numpy(), dtype=np.float64)
            if pa.types.is_boolean(col.type):
                return ["true" if v else "false" for v in col.to_pylist()]
            raise DataError(f"{path}: column {name!r} has unsupported type {col.type}")

        return get

    columns = {name: column(name) for name in header}
    return _parse_columns(path, header, columns, where, basis=basis)


@dataclass(frozen=True)
class _Timestamps:
    """Epoch seconds read from a Parquet timestamp column, and whether it had a timezone."""

    seconds: npt.NDArray[np.int64]
    zone_aware: bool


# -- shared parsing --------------------------------------------------------------------------


def _find(header: list[str], candidates: tuple[str, ...]) -> str | None:
    lowered = {name.lower(): name for name in header}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    return None


def _parse_columns(
    path: Path,
    header: list[str],
    columns: dict[str, Callable[[], _Column]],
    where: Where,
    *,
    basis: Basis,
) -> list[RawSeries]:
    time_col = _find(header, TIME_COLUMNS)
    if time_col is None:
        raise DataError(
            f"{path}: no time column; expected one of 'datetime_utc', 'Datetime (UTC)', "
            f"'timestamp' (header: {header[:6]})"
        )
    times = _parse_times(path, time_col, columns[time_col](), where)
    zone_col = _find(header, ZONE_COLUMNS)
    if zone_col is None:  # wide: one column per zone
        zone_names = [name for name in header if name != time_col]
        if not zone_names:
            raise DataError(f"{path}: no zone columns beside {time_col!r}")
        out = []
        for zone in zone_names:
            values = _parse_values(path, zone, columns[zone](), where)
            out.append(_checked(path, zone, times, values, None, np.arange(times.size), where))
        return out
    value_col = _value_column(path, header, basis)
    zones_text = columns[zone_col]()
    if not isinstance(zones_text, list):
        raise DataError(f"{path}: zone column {zone_col!r} must hold text")
    values = _parse_values(path, value_col, columns[value_col](), where)
    estimated: npt.NDArray[np.bool_] | None = None
    est_col = _find(header, (EM_ESTIMATED,))
    if est_col is not None:
        flags = columns[est_col]()
        if not isinstance(flags, list):
            raise DataError(f"{path}: column {est_col!r} must hold true/false")
        estimated = np.array([f.lower() in _TRUE for f in flags], dtype=np.bool_)
    zone_array = np.asarray(zones_text, dtype=object)
    out = []
    for zone in dict.fromkeys(zones_text):
        if not zone:
            bad = zones_text.index("")
            raise DataError(f"{path} {where(bad)}: empty zone in column {zone_col!r}")
        rows = np.flatnonzero(zone_array == zone)
        est = None if estimated is None else estimated[rows]
        out.append(_checked(path, zone, times[rows], values[rows], est, rows, where))
    return out


def _value_column(path: Path, header: list[str], basis: Basis) -> str:
    wanted = "(lca)" if basis is Basis.LIFECYCLE else "(direct)"
    for name in header:
        lowered = name.lower()
        if lowered.startswith("carbon intensity") and lowered.endswith(wanted):
            return name
    found = _find(header, VALUE_COLUMNS)
    if found is None:
        raise DataError(
            f"{path}: no intensity column for basis {basis}; expected "
            f"'Carbon Intensity gCO₂eq/kWh {wanted.upper()}' or 'intensity_g_per_kwh'"
        )
    return found


def _parse_times(path: Path, column: str, raw: _Column, where: Where) -> npt.NDArray[np.int64]:
    says_utc = "utc" in column.lower()
    if isinstance(raw, _Timestamps):
        if not raw.zone_aware and not says_utc:
            raise DataError(
                f"{path}: column {column!r} holds timestamps without timezone; store them "
                "as UTC-aware timestamps or name the column 'datetime_utc'"
            )
        return raw.seconds
    if not isinstance(raw, list):
        raise DataError(f"{path}: time column {column!r} must hold ISO 8601 text or timestamps")
    out = np.empty(len(raw), dtype=np.int64)
    for i, text in enumerate(raw):
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise DataError(
                f"{path} {where(i)}: column {column!r}: cannot read time {text!r} "
                "(expected ISO 8601, e.g. 2022-01-01T00:00:00Z)"
            ) from None
        if moment.tzinfo is None:
            if not says_utc:
                raise DataError(
                    f"{path} {where(i)}: time {text!r} has no timezone and column {column!r} "
                    "does not say UTC; add 'Z' or '+00:00', or name the column 'datetime_utc'"
                )
            moment = moment.replace(tzinfo=UTC)
        out[i] = int(moment.timestamp())
    return out


def _parse_values(path: Path, column: str, raw: _Column, where: Where) -> npt.NDArray[np.float64]:
    if isinstance(raw, list):
        texts = [text if text else "nan" for text in raw]
        try:
            values = np.asarray(texts, dtype=np.float64)
        except ValueError:
            for i, text in enumerate(texts):
                try:
                    float(text)
                except ValueError:
                    raise DataError(
                        f"{path} {where(i)}: column {column!r}: {text!r} is not a number"
                    ) from None
            raise
    else:
        values = np.asarray(raw, dtype=np.float64)
    bad = np.flatnonzero((values < 0) | (values > MAX_PLAUSIBLE_G_PER_KWH) | np.isinf(values))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path} {where(i)}: column {column!r}: intensity {values[i]:g} gCO2eq/kWh is "
            f"implausible (expected 0..{MAX_PLAUSIBLE_G_PER_KWH:g})"
        )
    return values


def _checked(
    path: Path,
    zone: str,
    times: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    estimated: npt.NDArray[np.bool_] | None,
    rows: npt.NDArray[np.intp],
    where: Where,
) -> RawSeries:
    steps = np.diff(times)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        what = "duplicate" if steps[bad[0]] == 0 else "out-of-order"
        moment = datetime.fromtimestamp(int(times[i]), UTC).isoformat()
        raise DataError(
            f"{path} {where(int(rows[i]))}: {what} time {moment} for zone {zone}; "
            "times must be strictly increasing"
        )
    return RawSeries(path, zone, times, values, estimated)
