"""Readers for trace files (CSV and Parquet, long or wide); used by :mod:`caftm.signals.traces`.

Each reader returns one :class:`RawSeries` per zone: sorted epoch seconds, values (NaN for an
empty cell) and, where the file says so, which values were estimated. Every problem raises
:class:`~caftm.errors.DataError` naming the file and the line (CSV) or row (Parquet).
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass, replace
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
DATE_COLUMNS = ("date", "date_utc", "day")
HOUR_COLUMNS = ("hour", "hour_utc", "hour_of_day", "hr")
#: Calendar helper columns some exports carry beside the time (derived from it): never read.
CALENDAR_COLUMNS = frozenset(
    {
        "year", "month", "day", "weekday", "week_day", "day_of_week", "dayofweek", "dow",
        "week", "weekofyear", "week_of_year", "day_of_year", "dayofyear", "doy", "quarter",
        "weekend", "is_weekend", "month_name", "day_name", "season", "holiday", "is_holiday",
        "hour", "hour_utc", "hour_of_day",  # not "hr": the zone of Croatia
    }
)  # fmt: skip
_TRUE = {"true", "1", "yes", "t"}


@dataclass(frozen=True)
class RawSeries:
    """One zone's values as read from one file.

    Attributes:
        basis: the basis the file states for these values (a column named "... (LCA)",
            "..._direct", or else the file's name), or None where it does not say.
        basis_from: where the file states it ("column 'X'", "file name"); empty when unsaid.
        timezone: how the file's times were read as UTC (e.g. "column 'Datetime (UTC)' says
            UTC", "'date' + 'hour' carry no timezone: taken as UTC").
        missing: where (line or row) each value without a number (empty cell, NaN) was read.
        notes: what the reader assumed that a user should be told.
    """

    path: Path
    zone: str
    times_s: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    estimated: npt.NDArray[np.bool_] | None
    basis: Basis | None = None
    missing: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    basis_from: str = ""
    timezone: str = ""


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
    notes: list[str] = []
    date_col, hour_col = _find(header, DATE_COLUMNS), _find(header, HOUR_COLUMNS)
    if date_col is not None and hour_col is not None:
        times = _parse_date_hour(path, date_col, hour_col, columns, where, notes)
        time_cols = {date_col, hour_col}
        timezone = f"{date_col!r} + {hour_col!r} carry no timezone: taken as UTC"
    else:
        time_col = _find(header, TIME_COLUMNS)
        if time_col is None:
            raise DataError(
                f"{path}: no time column; expected one of 'datetime_utc', 'Datetime (UTC)', "
                f"'timestamp', or 'date' with 'hour' (header: {header[:6]})"
            )
        times, timezone = _parse_times(path, time_col, columns[time_col](), where)
        time_cols = {time_col}
    zone_col = _find(header, ZONE_COLUMNS)
    helpers = [n for n in header if n.lower() in CALENDAR_COLUMNS and n not in time_cols]
    if helpers:
        notes.append(
            f"{path.name}: {', '.join(repr(n) for n in helpers)} read as calendar helper "
            "column(s) derived from the time: not read"
        )
    others = [name for name in header if name not in time_cols and name not in helpers]
    single = zone_col is None and others and all(_is_value_column(name) for name in others)
    named = _stated_basis(path.stem, strict=True)
    named_from = "the file name" if named is not None else ""
    if zone_col is None and not single:  # wide: one column per zone
        if not others:
            raise DataError(f"{path}: no zone columns beside {', '.join(sorted(time_cols))}")
        out = []
        for zone in others:
            values = _parse_values(path, zone, columns[zone](), where)
            rows = np.arange(times.size)
            series = _checked(path, zone, times, values, None, rows, where, named, notes)
            out.append(replace(series, basis_from=named_from, timezone=timezone))
        return out
    value_col, stated = _value_column(path, header, basis)
    stated_from = f"column {value_col!r}" if stated is not None else named_from
    stated = stated if stated is not None else named
    if single:  # one zone per file, no zone column: the zone is the file's name
        zones_text = [path.stem] * times.size
        notes.append(f"{path.name} has no zone column: its values are taken as zone {path.stem}")
    else:
        assert zone_col is not None
        raw_zones = columns[zone_col]()
        if not isinstance(raw_zones, list):
            raise DataError(f"{path}: zone column {zone_col!r} must hold text")
        zones_text = raw_zones
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
        series = _checked(path, zone, times[rows], values[rows], est, rows, where, stated, notes)
        out.append(replace(series, basis_from=stated_from, timezone=timezone))
    return out


def _tokens(name: str) -> set[str]:
    return set("".join(c if c.isalnum() else " " for c in name.lower()).split())


def _stated_basis(name: str, *, strict: bool = False) -> Basis | None:
    """The basis a column's name states ("... (LCA)", "ci_lifecycle", "..._direct"), if any;
    ``strict``: None where the name holds words of both (a file name such as "direct_vs_lca")."""
    tokens = _tokens(name)
    lifecycle, direct = bool(tokens & {"lca", "lifecycle"}), "direct" in tokens
    if strict and lifecycle and direct:
        return None
    if lifecycle:
        return Basis.LIFECYCLE
    if direct:
        return Basis.DIRECT
    return None


def _is_value_column(name: str) -> bool:
    """Whether a column's name reads as an intensity (not as a zone)."""
    lowered = name.lower()
    return lowered in VALUE_COLUMNS or (
        bool(_tokens(name) & {"intensity", "carbon", "co2", "moer", "ci", "emissions"})
        and _stated_basis(name) is not None
    )


def _parse_date_hour(
    path: Path,
    date_col: str,
    hour_col: str,
    columns: dict[str, Callable[[], _Column]],
    where: Where,
    notes: list[str],
) -> npt.NDArray[np.int64]:
    """Epoch seconds from a date column and an hour column.

    Hours are numbers (``7``) or clock times (``07:00``). Hours 0..23 start the hour; a file whose
    hours run 1..24 (never 0) numbers each hour by its end ("hour ending"), so hour h starts at
    h - 1. Dates carry no timezone: they are UTC (said in a note).
    """
    dates, hours_raw = columns[date_col](), columns[hour_col]()
    if isinstance(dates, _Timestamps):
        day_s = dates.seconds - dates.seconds % 86_400
    elif isinstance(dates, list):
        day_s = np.empty(len(dates), dtype=np.int64)
        for i, text in enumerate(dates):
            try:
                day = datetime.fromisoformat(text.strip()[:10]).replace(tzinfo=UTC)
            except ValueError:
                raise DataError(
                    f"{path} {where(i)}: column {date_col!r}: cannot read date {text!r} "
                    "(expected YYYY-MM-DD)"
                ) from None
            day_s[i] = int(day.timestamp())
    else:
        raise DataError(f"{path}: column {date_col!r} must hold dates (YYYY-MM-DD)")
    if isinstance(hours_raw, _Timestamps):
        raise DataError(f"{path}: column {hour_col!r} must hold hour numbers 0..23 or 1..24")
    offsets_s = _hour_offsets_s(path, hour_col, hours_raw, where)
    ending = bool(offsets_s.size) and offsets_s.min() >= 3600 and offsets_s.max() == 86_400
    if ending:
        distinct = np.unique(offsets_s)
        step_s = int(np.diff(distinct).min()) if distinct.size > 1 else 3600
        offsets_s = offsets_s - step_s
        notes.append(
            f"{path.name}: hours run 1..24, read as hour ending (hour h covers h-1..h UTC)"
        )
    out_of_range = np.flatnonzero((offsets_s < 0) | (offsets_s >= 86_400))
    if out_of_range.size:
        i = int(out_of_range[0])
        raise DataError(
            f"{path} {where(i)}: column {hour_col!r}: hour {offsets_s[i] / 3600:g} is outside "
            "0..23 (or 1..24 for hour ending)"
        )
    notes.append(f"{path.name}: {date_col!r} and {hour_col!r} carry no timezone: taken as UTC")
    return day_s + offsets_s


def _hour_offsets_s(path: Path, hour_col: str, raw: _Column, where: Where) -> npt.NDArray[np.int64]:
    """Seconds into the day of each hour cell: a whole number (``7``) or a clock time
    (``07:00``, ``07:30:00``, ``24:00`` for hour ending)."""
    if isinstance(raw, list) and any(":" in text for text in raw):
        out = np.empty(len(raw), dtype=np.int64)
        for i, text in enumerate(raw):
            parts = text.strip().split(":")
            try:
                numbers = [int(p) for p in parts]
            except ValueError:
                numbers = []
            if (
                not 1 <= len(numbers) <= 3
                or any(n < 0 for n in numbers)
                or any(n > 59 for n in numbers[1:])
            ):
                raise DataError(
                    f"{path} {where(i)}: column {hour_col!r}: {text!r} is not an hour "
                    "(expected 0..23 or HH:MM)"
                )
            h, m, sec = (*numbers, 0, 0)[:3]
            out[i] = h * 3600 + m * 60 + sec
        return out
    hours = _parse_values(path, hour_col, raw, where, check=False)
    bad = np.flatnonzero(~np.isfinite(hours) | (hours != np.round(hours)))
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path} {where(i)}: column {hour_col!r}: {hours[i]!r} is not an hour")
    return hours.astype(np.int64) * 3600


def _value_column(path: Path, header: list[str], basis: Basis) -> tuple[str, Basis | None]:
    """The intensity column for ``basis`` and the basis the file states for it (None: unsaid).

    Where a file has a direct and a lifecycle column, the one for ``basis`` is taken; where it
    has only one that says its basis, that one is taken whatever ``basis`` asks.
    """
    by_basis: dict[Basis, str] = {}
    for name in header:
        stated = _stated_basis(name)
        if stated is not None and _is_value_column(name):
            by_basis.setdefault(stated, name)
    if basis in by_basis:
        return by_basis[basis], basis
    found = _find(header, VALUE_COLUMNS)
    if found is not None:
        return found, None
    if by_basis:
        other, name = next(iter(by_basis.items()))
        return name, other
    wanted = "(lca)" if basis is Basis.LIFECYCLE else "(direct)"
    raise DataError(
        f"{path}: no intensity column for basis {basis}; expected "
        f"'Carbon Intensity gCO₂eq/kWh {wanted.upper()}' or 'intensity_g_per_kwh'"
    )


def _parse_times(
    path: Path, column: str, raw: _Column, where: Where
) -> tuple[npt.NDArray[np.int64], str]:
    """Epoch seconds of a time column, and how its times were read as UTC (for the notes)."""
    says_utc = "utc" in column.lower()
    said = f"column {column!r} says UTC"
    if isinstance(raw, _Timestamps):
        if not raw.zone_aware and not says_utc:
            raise DataError(
                f"{path}: column {column!r} holds timestamps without timezone; store them "
                "as UTC-aware timestamps or name the column 'datetime_utc'"
            )
        return raw.seconds, "timestamps with a timezone" if raw.zone_aware else said
    if not isinstance(raw, list):
        raise DataError(f"{path}: time column {column!r} must hold ISO 8601 text or timestamps")
    out = np.empty(len(raw), dtype=np.int64)
    naive = 0
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
            naive += 1
        out[i] = int(moment.timestamp())
    return out, said if naive else "UTC offsets written in the file"


def _parse_values(
    path: Path, column: str, raw: _Column, where: Where, *, check: bool = True
) -> npt.NDArray[np.float64]:
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
    if not check:
        return values
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
    basis: Basis | None = None,
    notes: list[str] | None = None,
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
    missing = tuple(where(int(rows[i])) for i in np.flatnonzero(np.isnan(values)))
    return RawSeries(path, zone, times, values, estimated, basis, missing, tuple(notes or ()))
