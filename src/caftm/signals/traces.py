"""Carbon-intensity traces from files: Electricity Maps exports, wide CSV, Parquet.

A :class:`TraceSource` holds a dense ``zones x steps`` float64 array on a regular UTC grid,
NaN where the file had no value. Gaps are reported by :meth:`TraceSource.gaps` and never
filled silently: :meth:`TraceSource.intensity` at a gap follows the source's ``on_gap`` policy,
:meth:`TraceSource.history` leaves gap steps out, and :meth:`TraceSource.lookup` returns NaN.

Supported files (format detected from the suffix and the header):

* ``electricitymaps`` — the data-portal export (``Datetime (UTC)``, ``Zone Id``, direct and
  LCA intensity, ``Data Estimated``); naive times are UTC because the header says so.
* ``long`` — a CSV with a zone column, a time column and an intensity column.
* ``wide`` — a CSV with a time column (``datetime_utc``) and one column per zone.
* ``parquet`` — long or wide, as above, read with pyarrow.

Naive timestamps are accepted only where the column name says UTC (``datetime_utc``,
``Datetime (UTC)``, ...); otherwise they are refused with :class:`~caftm.errors.DataError`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from caftm.errors import ConfigError, DataError, ProviderError
from caftm.signals._trace_files import RawSeries, read_trace_file
from caftm.signals.base import Basis, IntensitySource, Kind, Reading, as_utc, utcnow

__all__ = ["GapPolicy", "LookupMethod", "TraceProvenance", "TraceSource", "load_trace"]

logger = logging.getLogger(__name__)

#: What :meth:`TraceSource.intensity` does at a gap: raise ProviderError, or hold the last value.
GapPolicy = Literal["raise", "hold"]
#: Point look-up between grid steps: hold the step's value, or interpolate linearly.
LookupMethod = Literal["hold", "linear"]

FloatArray = npt.NDArray[np.float64]
#: The project's step: traces finer than this are averaged onto it when loaded.
STEP_S = 3600
#: Most values (zones x steps) a loaded trace may hold: 50 M float64 = 400 MB.
MAX_GRID_CELLS = 50_000_000


@dataclass(frozen=True)
class TraceProvenance:
    """What :func:`load_trace` read and assumed, for every output that shows the trace's figures.

    Attributes:
        files: the files' names, in the order given.
        basis: the basis the values were read as.
        basis_asked: what the caller asked for (None: nothing asked).
        stated_by: file name → where it states its basis ("column 'X'", "file name").
        unstated: files that state neither direct nor lifecycle.
        timezones: file name → how its times were read as UTC.
        notes: everything else the loader assumed (rows without a value, resampling, ...).
    """

    files: tuple[str, ...]
    basis: Basis
    basis_asked: Basis | None
    stated_by: dict[str, str]
    unstated: tuple[str, ...]
    timezones: dict[str, str]
    notes: tuple[str, ...]

    def basis_line(self) -> str:
        """One line naming the basis and who states it, e.g. ``basis: not stated by X.csv``."""
        parts = []
        if self.stated_by:
            parts.append(f"{self.basis} (stated by {_grouped(self.stated_by, '{how} of {files}')})")
        if self.unstated:
            taken = f", taken as {self.basis_asked} as asked" if self.basis_asked else ""
            parts.append(f"not stated by {_names(self.unstated)}{taken}")
        return "basis: " + "; ".join(parts)

    def timezone_line(self) -> str:
        """One line saying how each file's times were read as UTC."""
        return f"times: UTC ({_grouped(self.timezones, '{files}: {how}')})"


def _names(names: Sequence[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _grouped(how_by_file: dict[str, str], template: str) -> str:
    """``{file: how}`` as ``template`` per answer, joined by "; " (files sharing one together)."""
    files_by_how: dict[str, list[str]] = {}
    for name, how in how_by_file.items():
        files_by_how.setdefault(how, []).append(name)
    return "; ".join(
        template.format(how=how, files=_names(names)) for how, names in files_by_how.items()
    )


class TraceSource(IntensitySource):
    """Intensity of several zones on a regular UTC grid, held in memory.

    Args:
        zones: zone ids, one per row of ``values``.
        start: UTC time of column 0.
        step_s: grid step in seconds.
        values: ``(len(zones), steps)`` intensities in gCO2eq/kWh, NaN for gaps.
        basis: lifecycle or direct.
        estimated: optional boolean array like ``values``: True where the provider estimated.
        kind: kind of the non-estimated values (MEASURED for real data, SYNTHETIC for generated).
        label: text recorded in each reading's ``source`` (e.g. the file name).
        on_gap: ``"raise"`` (default): :meth:`intensity` at a gap raises ProviderError;
            ``"hold"``: it returns the last value before the gap, kind ESTIMATED.

    Raises:
        ConfigError: shapes disagree, duplicate zones, or a non-positive step.
    """

    name = "trace"

    def __init__(
        self,
        zones: Sequence[str],
        start: datetime,
        step_s: int,
        values: npt.ArrayLike,
        *,
        basis: Basis = Basis.LIFECYCLE,
        estimated: npt.ArrayLike | None = None,
        kind: Kind = Kind.MEASURED,
        label: str = "trace",
        on_gap: GapPolicy = "raise",
    ) -> None:
        array = np.ascontiguousarray(values, dtype=np.float64)
        if array.ndim != 2 or array.shape[0] != len(zones):
            raise ConfigError(
                f"trace values have shape {array.shape}; expected ({len(zones)}, steps)"
            )
        if len(set(zones)) != len(zones):
            raise ConfigError(f"trace {label} lists a zone twice: {list(zones)}")
        if step_s <= 0:
            raise ConfigError(f"trace step must be positive, got {step_s} s")
        if on_gap not in ("raise", "hold"):
            raise ConfigError(f"on_gap must be 'raise' or 'hold', got {on_gap!r}")
        self._zones = list(zones)
        self._index = {zone: i for i, zone in enumerate(self._zones)}
        self.start = as_utc(start, what="trace start")
        self.start_s = int(self.start.timestamp())
        self.step_s = int(step_s)
        self.values: FloatArray = array
        self.estimated = (
            None if estimated is None else np.asarray(estimated, dtype=bool).reshape(array.shape)
        )
        self.basis = basis
        self.kind = kind
        self.label = label
        self.on_gap: GapPolicy = on_gap
        #: What the loader read and assumed (set by :func:`load_trace`; None when built in code).
        self.provenance: TraceProvenance | None = None

    # -- shape -------------------------------------------------------------------------------

    @property
    def n_steps(self) -> int:
        """Number of grid steps."""
        return int(self.values.shape[1])

    @property
    def end(self) -> datetime:
        """UTC time just after the last step (exclusive)."""
        return self.start + timedelta(seconds=self.step_s * self.n_steps)

    def times(self) -> list[datetime]:
        """UTC time of every grid step."""
        return [self.start + timedelta(seconds=self.step_s * i) for i in range(self.n_steps)]

    def times_s(self) -> npt.NDArray[np.int64]:
        """Epoch seconds of every grid step."""
        return self.start_s + self.step_s * np.arange(self.n_steps, dtype=np.int64)

    def zones(self) -> list[str]:
        """Zones in this trace, in row order."""
        return list(self._zones)

    def zone_index(self, zone: str) -> int:
        """Row of ``zone``.

        Raises:
            ConfigError: the trace has no such zone (the message lists a few it has).
        """
        try:
            return self._index[zone]
        except KeyError:
            known = ", ".join(self._zones[:8]) + (", ..." if len(self._zones) > 8 else "")
            raise ConfigError(
                f"unknown zone {zone!r} in {self.label}; it has {len(self._zones)} zone(s): {known}"
            ) from None

    def series(self, zone: str) -> FloatArray:
        """The whole row of ``zone`` (a view; NaN at gaps)."""
        row: FloatArray = self.values[self.zone_index(zone)]
        return row

    # -- vectorised look-up ------------------------------------------------------------------

    def lookup(
        self,
        zone_indices: npt.ArrayLike,
        times_s: npt.ArrayLike,
        *,
        method: LookupMethod = "hold",
    ) -> FloatArray:
        """Intensities at many (zone row, epoch-second) points at once, gCO2eq/kWh.

        ``hold`` returns the value of the step containing each time; ``linear`` interpolates
        between the two surrounding steps. Points outside the trace or touching a gap are NaN.
        """
        rows = np.asarray(zone_indices, dtype=np.intp)
        seconds = np.asarray(times_s, dtype=np.float64)
        offset = (seconds - self.start_s) / self.step_s
        n = self.n_steps
        if method == "hold":
            cols = np.floor(offset)
            inside = (cols >= 0) & (cols < n)
            safe = np.where(inside, cols, 0).astype(np.intp)
            out = self.values[rows, safe]
            return np.where(inside, out, np.nan)
        if method == "linear":
            cols = np.floor(offset)
            frac = offset - cols
            inside = (offset >= 0) & (offset <= n - 1)
            left = np.clip(cols, 0, n - 1).astype(np.intp)
            right = np.minimum(left + 1, n - 1)
            flat = self.values
            out = flat[rows, left] * (1.0 - frac) + flat[rows, right] * frac
            exact = frac == 0.0
            out = np.where(exact, flat[rows, left], out)
            return np.where(inside, out, np.nan)
        raise ConfigError(f"lookup method must be 'hold' or 'linear', got {method!r}")

    # -- gaps and resampling -----------------------------------------------------------------

    def gaps(self) -> list[tuple[str, datetime, datetime]]:
        """Every run of missing steps as ``(zone, first missing time, end)``, end exclusive."""
        found: list[tuple[str, datetime, datetime]] = []
        missing = np.isnan(self.values)
        for row, zone in enumerate(self._zones):
            flags = np.concatenate(([False], missing[row], [False])).astype(np.int8)
            edges = np.flatnonzero(np.diff(flags))
            for begin, stop in zip(edges[::2], edges[1::2], strict=True):
                found.append((zone, self._time_at(int(begin)), self._time_at(int(stop))))
        return found

    def resample(self, step_s: int, *, method: LookupMethod = "linear") -> TraceSource:
        """A new trace on a grid of ``step_s`` seconds from the same start.

        Coarser multiples of the step average each bin (a bin touching a gap stays a gap);
        other steps sample with ``method`` (``linear`` interpolation or step ``hold``).
        Gaps are carried over, never filled.

        Raises:
            ConfigError: ``step_s`` is not positive.
        """
        if step_s <= 0:
            raise ConfigError(f"resample step must be positive, got {step_s} s")
        span_s = self.step_s * self.n_steps
        if step_s > self.step_s and step_s % self.step_s == 0:
            factor = step_s // self.step_s
            steps = self.n_steps // factor
            blocks = self.values[:, : steps * factor].reshape(len(self._zones), steps, factor)
            values = blocks.mean(axis=2)
            estimated = None
            if self.estimated is not None:
                est = self.estimated[:, : steps * factor].reshape(len(self._zones), steps, factor)
                estimated = est.any(axis=2)
        else:
            steps = max(1, span_s // step_s)
            if method == "linear":
                steps = max(1, (self.step_s * (self.n_steps - 1)) // step_s + 1)
            grid = self.start_s + step_s * np.arange(steps, dtype=np.float64)
            rows = np.repeat(np.arange(len(self._zones)), steps)
            times = np.tile(grid, len(self._zones))
            values = self.lookup(rows, times, method=method).reshape(len(self._zones), steps)
            estimated = None
            if self.estimated is not None:
                cols = np.clip(((grid - self.start_s) // self.step_s).astype(np.intp), 0, None)
                estimated = self.estimated[:, cols]
        resampled = TraceSource(
            self._zones,
            self.start,
            step_s,
            values,
            basis=self.basis,
            estimated=estimated,
            kind=self.kind,
            label=f"{self.label} resampled to {step_s} s",
            on_gap=self.on_gap,
        )
        resampled.provenance = self.provenance
        return resampled

    # -- IntensitySource ---------------------------------------------------------------------

    def intensity(self, zone: str, time: datetime | None = None) -> Reading:
        """The value of the step containing ``time`` (default now).

        Raises:
            ConfigError: unknown zone or naive time.
            ProviderError: ``time`` outside the trace, or at a gap with ``on_gap="raise"``.
        """
        row = self.zone_index(zone)
        when = utcnow() if time is None else as_utc(time, what="requested time")
        col = self._column(when)
        value = float(self.values[row, col])
        if np.isnan(value):
            if self.on_gap == "raise":
                raise ProviderError(
                    f"{self.label} has a gap for zone {zone} at {self._time_at(col).isoformat()}; "
                    "see TraceSource.gaps() or load with on_gap='hold'"
                )
            held = np.flatnonzero(~np.isnan(self.values[row, :col]))
            if held.size == 0:
                raise ProviderError(
                    f"{self.label} has no value for zone {zone} at or before {when.isoformat()}"
                )
            source_col = int(held[-1])
            return Reading(
                zone,
                self._time_at(col),
                float(self.values[row, source_col]),
                self.basis,
                Kind.ESTIMATED,
                f"{self.label} (held over gap from {self._time_at(source_col).isoformat()})",
            )
        return self._reading(zone, row, col)

    def history(self, zone: str, start: datetime, end: datetime) -> list[Reading]:
        """Readings of the steps starting in ``[start, end)``; gap steps are left out.

        Raises:
            ConfigError: unknown zone or naive times.
        """
        row = self.zone_index(zone)
        first_s = as_utc(start, what="history start").timestamp()
        end_s = as_utc(end, what="history end").timestamp()
        lo = max(0, int(np.ceil((first_s - self.start_s) / self.step_s)))
        hi = min(self.n_steps, int(np.ceil((end_s - self.start_s) / self.step_s)))
        if hi <= lo:
            return []
        cols = lo + np.flatnonzero(~np.isnan(self.values[row, lo:hi]))
        return [self._reading(zone, row, int(col)) for col in cols]

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> list[Reading]:
        """Forecast from the trace's own history (model chosen by back-testing).

        Raises:
            ConfigError: unknown zone.
            ProviderError: too little history before ``start``.
        """
        from caftm.signals.forecast import forecast_readings

        self.zone_index(zone)
        readings: list[Reading] = forecast_readings(
            self, zone, start if start is not None else utcnow(), horizon
        )
        return readings

    # -- helpers -----------------------------------------------------------------------------

    def _time_at(self, col: int) -> datetime:
        return datetime.fromtimestamp(self.start_s + self.step_s * col, UTC)

    def _column(self, when: datetime) -> int:
        col = int((when.timestamp() - self.start_s) // self.step_s)
        if not 0 <= col < self.n_steps:
            raise ProviderError(
                f"{when.isoformat()} is outside {self.label} "
                f"[{self.start.isoformat()}, {self.end.isoformat()})"
            )
        return col

    def _reading(self, zone: str, row: int, col: int) -> Reading:
        kind = self.kind
        if self.estimated is not None and self.estimated[row, col]:
            kind = Kind.ESTIMATED
        return Reading(
            zone, self._time_at(col), float(self.values[row, col]), self.basis, kind, self.label
        )


def load_trace(
    paths: str | Path | Sequence[str | Path],
    *,
    basis: Basis | None = None,
    zones: Sequence[str] | None = None,
    on_gap: GapPolicy = "raise",
    step_s: int | None = STEP_S,
) -> TraceSource:
    """Load one or more trace files into one :class:`TraceSource`.

    Files for the same or different zones are concatenated onto one regular grid; the step is
    the smallest spacing seen, after series finer than ``step_s`` (15- or 30-minute data) are
    averaged onto it: each step's value is the mean of the values in it, and a step missing any
    of them is a gap (``step_s=None`` keeps the files' own steps). ``basis`` picks the LCA
    (default) or direct column where a file has both (an Electricity Maps export); a file whose
    one intensity column (or else its name, e.g. ``ci_2022_lca.csv``) states its basis is read as
    that basis; files stating different bases are refused. A file stating neither is read as
    ``basis`` and said to be unstated (its readings carry lifecycle when ``basis`` is None). What
    was assumed (basis, times taken as UTC, calendar columns left out, rows without a value,
    resampling) is recorded as the source's notes (:meth:`~IntensitySource.take_notes`) and in
    :attr:`TraceSource.provenance`.

    Raises:
        DataError: a file is missing, malformed, has naive non-UTC times, values < 0 or
            > 2500, duplicate or unsorted times (message names path and line or column).
        ConfigError: ``zones`` names a zone absent from the files.
    """
    items = [paths] if isinstance(paths, str | Path) else list(paths)
    if not items:
        raise ConfigError("load_trace needs at least one file")
    if step_s is not None and step_s <= 0:
        raise ConfigError(f"trace step must be positive, got {step_s} s")
    series: list[RawSeries] = []
    for item in items:
        series.extend(read_trace_file(Path(item), basis=basis or Basis.LIFECYCLE))
    notes = list(dict.fromkeys(n for s in series for n in s.notes))
    read_as = _one_basis(series, basis, notes)
    notes += [_missing_note(s) for s in series if s.missing]
    if step_s is not None:
        series = [_to_step(s, step_s, notes) for s in series]
    trace = _assemble(series, items, basis=read_as, zones=zones, on_gap=on_gap)
    for note in notes:
        trace.note(note)
    trace.provenance = TraceProvenance(
        files=tuple(dict.fromkeys(Path(p).name for p in items)),
        basis=read_as,
        basis_asked=basis,
        stated_by={s.path.name: s.basis_from for s in series if s.basis is not None},
        unstated=tuple(dict.fromkeys(s.path.name for s in series if s.basis is None)),
        timezones={s.path.name: s.timezone for s in series},
        notes=tuple(notes),
    )
    return trace


def _one_basis(series: list[RawSeries], asked: Basis | None, notes: list[str]) -> Basis:
    """The basis of the loaded values: what the files state, else ``asked`` (said in a note),
    else lifecycle as a placeholder (the note says the basis is not stated).

    Raises:
        DataError: files state different bases (their numbers differ by about a third).
    """
    stated = {s.basis for s in series if s.basis is not None}
    if len(stated) > 1:
        by = {b: next(s.path.name for s in series if s.basis is b) for b in stated}
        raise DataError(
            f"{by[Basis.DIRECT]} holds direct and {by[Basis.LIFECYCLE]} lifecycle intensities; "
            "they differ by about a third: load them separately"
        )
    unsaid = list(dict.fromkeys(s.path.name for s in series if s.basis is None))
    names = ", ".join(unsaid[:3]) + (" ..." if len(unsaid) > 3 else "")
    if stated:
        (basis,) = stated
        if asked is not None and basis is not asked:
            notes.append(f"the trace states {basis} intensities (not {asked}): read as {basis}")
        if unsaid:
            notes.append(f"{names} do(es) not say direct or lifecycle: taken as {basis}")
        return basis
    if asked is None:
        notes.append(f"{names} do(es) not say direct or lifecycle: basis not stated")
        return Basis.LIFECYCLE
    notes.append(f"{names} do(es) not say direct or lifecycle: taken as {asked}")
    return asked


def _missing_note(s: RawSeries) -> str:
    places = ", ".join(s.missing[:5]) + (", ..." if len(s.missing) > 5 else "")
    return (
        f"{s.path.name}: {len(s.missing)} row(s) of zone {s.zone} have no intensity ({places}): "
        "kept as gaps, left out of history, never filled"
    )


def _to_step(s: RawSeries, step_s: int, notes: list[str]) -> RawSeries:
    """``s`` averaged onto ``step_s`` when its own step is finer and divides it.

    Rule: the value of each ``step_s`` bin (aligned on UTC epoch multiples, e.g. whole hours) is
    the mean of the values in it; a bin missing any value (absent row or empty cell) is a gap.
    """
    if s.times_s.size < 2:
        return s
    own_s = int(np.diff(s.times_s).min())
    if own_s >= step_s or step_s % own_s or own_s % 60:  # whole minutes only: 1 s is a typo
        return s
    per_bin = step_s // own_s
    bins = s.times_s - s.times_s % step_s
    starts, inverse, counts = np.unique(bins, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=s.values, minlength=starts.size)
    values = np.where(counts == per_bin, sums / per_bin, np.nan)  # NaN propagates through sums
    estimated = None
    if s.estimated is not None:
        estimated = np.bincount(inverse, weights=s.estimated.astype(np.float64)) > 0
    notes.append(
        f"{s.path.name}: zone {s.zone} has {own_s / 60:g}-minute values, averaged to "
        f"{step_s / 60:g}-minute steps (mean of the {per_bin} values in each; a step missing "
        "any of them is a gap)"
    )
    return replace(s, times_s=starts.astype(np.int64), values=values, estimated=estimated)


def _assemble(
    series: list[RawSeries],
    items: Sequence[str | Path],
    *,
    basis: Basis,
    zones: Sequence[str] | None,
    on_gap: GapPolicy,
) -> TraceSource:
    label = ", ".join(Path(p).name for p in items[:3]) + (" ..." if len(items) > 3 else "")
    filled_series = [s.times_s for s in series if s.times_s.size]
    if not filled_series:
        raise DataError(f"{label}: no data rows (only a header or an empty table)")
    all_times = np.concatenate(filled_series)
    start_s = int(all_times.min())
    steps = [np.diff(np.unique(s.times_s)) for s in series if s.times_s.size > 1]
    step_s = int(min(d.min() for d in steps)) if steps else 3600
    offgrid = [s for s in series if np.any((s.times_s - start_s) % step_s)]
    if offgrid:
        raise DataError(
            f"{offgrid[0].path}: times for zone {offgrid[0].zone} are not on a regular "
            f"{step_s} s grid from {datetime.fromtimestamp(start_s, UTC).isoformat()}"
        )
    n_steps = int((all_times.max() - start_s) // step_s) + 1
    names = list(dict.fromkeys(s.zone for s in series))
    if n_steps * len(zones if zones is not None else names) > MAX_GRID_CELLS:
        end = datetime.fromtimestamp(int(all_times.max()), UTC).isoformat()
        raise DataError(
            f"{label}: times from {datetime.fromtimestamp(start_s, UTC).isoformat()} to {end} "
            f"in steps of {step_s} s make {n_steps} steps per zone, too many to hold; "
            "check for a mistyped date or split the file"
        )
    if zones is not None:
        missing = [z for z in zones if z not in names]
        if missing:
            raise ConfigError(f"zone(s) {missing} not in {label}; it has {names[:8]}")
        names = list(zones)
    row_of = {zone: i for i, zone in enumerate(names)}
    values = np.full((len(names), n_steps), np.nan)
    estimated = np.zeros((len(names), n_steps), dtype=bool)
    filled = np.zeros((len(names), n_steps), dtype=bool)
    for s in series:
        if s.zone not in row_of:
            continue
        row = row_of[s.zone]
        cols = (s.times_s - start_s) // step_s
        if np.any(filled[row, cols]):
            dup = int(cols[np.flatnonzero(filled[row, cols])[0]])
            when = datetime.fromtimestamp(start_s + dup * step_s, UTC).isoformat()
            raise DataError(f"{s.path}: zone {s.zone} has a second value for {when}")
        filled[row, cols] = True
        values[row, cols] = s.values
        if s.estimated is not None:
            estimated[row, cols] = s.estimated
    logger.debug("loaded %s: %d zone(s), %d steps of %d s", label, len(names), n_steps, step_s)
    return TraceSource(
        names,
        datetime.fromtimestamp(start_s, UTC),
        step_s,
        values,
        basis=basis,
        estimated=estimated if estimated.any() else None,
        label=f"trace {label}",
        on_gap=on_gap,
    )
