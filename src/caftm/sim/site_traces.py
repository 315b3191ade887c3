"""The candidate sites' intensities on a trace's grid, and what the policy may know of the future.

:class:`SiteTraces` holds one row of a trace per site (gCO2eq/kWh, regular UTC grid) and answers
forecasts in one of three ways:

* ``none`` — no forecast (policies that need none; forecast policies fall back to current values).
* ``ours`` — the project's forecaster (:mod:`caftm.signals.forecast`) on the trace's **past only**:
  at each hour the model chosen by back-testing (re-chosen every 4 weeks, on the 35 days before) is
  fitted to the 35 days before that hour and predicts the next 24 hours, as
  :func:`~caftm.signals.forecast.forecast_readings` does for a live source.
* ``oracle`` — the trace's own next 24 hours (a perfect forecast; labelled ORACLE in outputs).

Forecasts are computed once per site for every hour of the trace at a time
(:func:`~caftm.signals.forecast_batch.forecast_origins`: the same models, fitted at every origin
at once) and kept in a :class:`ForecastCache` that every job, policy and site set replaying the
same series shares (:func:`caftm.sim.evaluate.evaluate` fills it before forking its workers, so
they all read one copy). A policy sees them through :class:`LazyForecast`, which costs nothing
until it is read. ``batch_forecasts=False`` fits one model per (site, hour) instead, as a live
source would (the reference path; decisions agree). :meth:`SiteTraces.assumptions` lists,
one line each, what every output of a simulation must state: the basis, how times were read as
UTC, the loader's notes and the span trimmed to where every site has data. :class:`TraceView` is
the :class:`~caftm.control.observe.SignalView` of one simulated run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, cast, overload

import numpy as np
import numpy.typing as npt

from caftm.control.states import SiteOutlook
from caftm.errors import ConfigError
from caftm.signals.base import MAX_PLAUSIBLE_G_PER_KWH
from caftm.signals.forecast import CANDIDATES, select_model
from caftm.signals.forecast_batch import forecast_origins
from caftm.signals.traces import TraceSource

log = logging.getLogger(__name__)

ForecastMode = Literal["none", "ours", "oracle"]
FloatArray = npt.NDArray[np.float64]
#: A site's forecasts at every column: values ``(columns, horizon)`` and how many are valid.
ForecastTable = tuple[FloatArray, npt.NDArray[np.int64]]
#: Forecast tables by :meth:`SiteTraces.table_key` (one dict, shared).
ForecastCache = dict[tuple[str, int, float, int], ForecastTable]

HISTORY_DAYS = 35
HORIZON_H = 24
#: The forecaster's model is re-chosen by back-testing this often, h (a back-test costs ~30 ms).
RESELECT_EVERY_H = 28 * 24


class SiteTraces:
    """Intensity of each candidate site on a regular grid, with memoised forecasts.

    Args:
        trace: the loaded trace (its ``kind`` says whether it is measured or synthetic).
        sites: site name → grid zone, in the order the policy sees them.

    Raises:
        ConfigError: a zone is missing from the trace, the grid does not divide a day, or a site's
            series has a gap (the simulator never fills gaps silently).
    """

    def __init__(
        self,
        trace: TraceSource,
        sites: Mapping[str, str],
        *,
        forecast_cache: ForecastCache | None = None,
        batch_forecasts: bool = True,
    ) -> None:
        if not sites:
            raise ConfigError("simulation needs at least one site")
        if 86_400 % trace.step_s:
            raise ConfigError(f"{trace.label}: a {trace.step_s} s grid does not divide a day")
        self.trace = trace
        self.sites = list(sites)
        self.zones = [sites[s] for s in self.sites]
        rows = [trace.zone_index(z) for z in self.zones]
        values = trace.values[rows]
        complete = np.flatnonzero(np.all(np.isfinite(values), axis=0))
        self.step_s = float(trace.step_s)
        if complete.size == 0:
            raise ConfigError(
                f"{trace.label}: no hour where every site has a value ({self._spans(values)})"
            )
        first, last = int(complete[0]), int(complete[-1])  # the span where every site has data
        self.values: FloatArray = np.ascontiguousarray(values[:, first : last + 1])
        self.start_s = float(trace.start_s + first * trace.step_s)
        self.n_steps = last - first + 1
        #: What the simulator changed in the trace (the span trimmed to where every site has data).
        self.notes: list[str] = []
        if first > 0 or last < trace.n_steps - 1:
            self.notes.append(self._trimmed_note(values, first, last))
        for site, zone, row in zip(self.sites, self.zones, self.values, strict=True):
            gaps = np.flatnonzero(np.isnan(row))
            if gaps.size:
                when = datetime.fromtimestamp(self.start_s + gaps[0] * self.step_s, UTC)
                raise ConfigError(
                    f"{trace.label}: zone {zone} (site {site}) has {gaps.size} missing value(s), "
                    f"the first at {when.isoformat()}; the simulator needs complete series"
                )
        self.index = {s: i for i, s in enumerate(self.sites)}
        #: every site's forecast at every hour; pass one cache to several SiteTraces to share it
        self.forecast_cache = ForecastCache() if forecast_cache is None else forecast_cache
        self.batch_forecasts = batch_forecasts
        self._per_hour: dict[tuple[str, int, int], tuple[float, ...]] = {}
        self._models: dict[tuple[int, int], str] = {}
        self._outlooks: dict[tuple[str, int], tuple[SiteOutlook, ...]] = {}
        self._readings: dict[int, dict[str, float]] = {}
        self._per_day = int(86_400 // self.step_s)

    def _span(self, first: int, end: int) -> str:
        """Trace columns ``first`` to ``end`` (exclusive) as ``[start, end)`` in UTC."""

        def when(col: int) -> str:
            moment = datetime.fromtimestamp(self.trace.start_s + col * self.trace.step_s, UTC)
            return moment.strftime("%Y-%m-%dT%H:%MZ")

        return f"[{when(first)}, {when(end)})"

    def _spans(self, values: FloatArray, first: int = -1, last: int = -1) -> str:
        """Each site's span with data (only those reaching outside ``first..last``, when given)."""
        out = []
        for site, row in zip(self.sites, values, strict=True):
            have = np.flatnonzero(np.isfinite(row))
            if not have.size:
                out.append(f"{site} has no value")
            elif first < 0 or have[0] < first or have[-1] > last:
                out.append(f"{site} has {self._span(int(have[0]), int(have[-1]) + 1)}")
        return "; ".join(out)

    def _trimmed_note(self, values: FloatArray, first: int, last: int) -> str:
        """The note saying which sites' data the common span cut, and where."""
        cut = self._spans(values, first, last)
        span = self._span(first, last + 1)
        return f"sites trimmed to their common span {span}" + (f": {cut}" if cut else "")

    def assumptions(self) -> list[str]:
        """What every output of a simulation states: the basis, how the times were read as UTC,
        the loader's notes and what the simulator trimmed (one line each)."""
        provenance = self.trace.provenance
        if provenance is None:
            made = "generated" if self.synthetic else "built in code"
            lines = [f"basis: {self.trace.basis} ({made})", f"times: UTC ({made})"]
            return lines + self.notes
        lines = [provenance.basis_line(), provenance.timezone_line()]
        return lines + [n for n in provenance.notes if n not in lines] + self.notes

    @property
    def basis_label(self) -> str:
        """``lifecycle``, ``direct``, or ``basis not stated`` (files that say neither, and no
        basis asked for); for axis labels."""
        provenance = self.trace.provenance
        if provenance is not None and not provenance.stated_by and provenance.basis_asked is None:
            return "basis not stated"
        return str(self.trace.basis)

    @property
    def synthetic(self) -> bool:
        """Whether the trace is generated rather than measured."""
        return str(self.trace.kind) == "synthetic"

    @property
    def end_s(self) -> float:
        """End of the grid (exclusive), POSIX s."""
        return self.start_s + self.step_s * self.n_steps

    def column(self, time_s: float) -> int:
        """Grid column containing ``time_s`` (clamped to the grid)."""
        col = int((time_s - self.start_s) // self.step_s)
        return min(max(col, 0), self.n_steps - 1)

    def intensity(self, row: int, time_s: float) -> float:
        """Intensity of site ``row`` at ``time_s``, gCO2eq/kWh."""
        return float(self.values[row, self.column(time_s)])

    def readings(self, col: int) -> dict[str, float]:
        """Site → intensity at grid column ``col`` (memoised; do not modify)."""
        found = self._readings.get(col)
        if found is None:
            column = self.values[:, col]
            found = {site: float(column[i]) for i, site in enumerate(self.sites)}
            self._readings[col] = found
        return found

    def outlooks(self, col: int, mode: ForecastMode) -> tuple[SiteOutlook, ...]:
        """Every site's outlook at grid column ``col`` (forecasts lazy; memoised)."""
        key = (mode, col)
        found = self._outlooks.get(key)
        if found is None:
            found = tuple(
                SiteOutlook(site, value, self.forecast_at(self.index[site], col, mode))
                for site, value in self.readings(col).items()
            )
            self._outlooks[key] = found
        return found

    def forecast(self, row: int, time_s: float, mode: ForecastMode) -> tuple[float, ...]:
        """Hourly forecast of site ``row`` from the hour containing ``time_s`` (see module doc)."""
        return self.forecast_at(row, self.column(time_s), mode)

    def forecast_at(self, row: int, col: int, mode: ForecastMode) -> tuple[float, ...]:
        """The forecast at grid column ``col``: empty (``none``, or too little history) or a
        :class:`LazyForecast` typed as the tuple a :class:`SiteOutlook` holds."""
        if mode == "none":
            return ()
        steps = HORIZON_H * 3600 // int(self.step_s)
        if mode == "oracle":
            length = min(steps, self.n_steps - col)
        else:
            length = steps if col >= 2 * self._per_day else 0
        if length <= 0:
            return ()
        return cast("tuple[float, ...]", LazyForecast(self, row, col, mode, length))

    def compute_forecast(self, row: int, col: int, mode: ForecastMode) -> tuple[float, ...]:
        """The forecast values (from the shared table, or fitted for this hour alone)."""
        if self.batch_forecasts and mode != "none":
            values, lengths = self.forecast_table(row, mode)
            return tuple(values[col, : lengths[col]].tolist())
        key = (mode, row, col)
        cached = self._per_hour.get(key)
        if cached is None:
            cached = self._oracle(row, col) if mode == "oracle" else self._ours(row, col)
            self._per_hour[key] = cached
        return cached

    def table_key(self, row: int, mode: ForecastMode) -> tuple[str, int, float, int]:
        """What identifies a site's forecast table: its series (by content), grid and mode."""
        return (mode, hash(self.values[row].tobytes()), self.start_s, int(self.step_s))

    def forecast_table(self, row: int, mode: ForecastMode) -> ForecastTable:
        """Site ``row``'s forecast at every column (computed once, kept in the shared cache)."""
        key = self.table_key(row, mode)
        table = self.forecast_cache.get(key)
        if table is None:
            table = self.build_table(row, mode)
            self.forecast_cache[key] = table
        return table

    def missing_tables(self, mode: ForecastMode) -> list[int]:
        """Rows whose ``mode`` table is not in the cache yet."""
        return [
            r for r in range(len(self.sites)) if self.table_key(r, mode) not in self.forecast_cache
        ]

    def build_table(self, row: int, mode: ForecastMode) -> ForecastTable:
        """``(values (columns, horizon), lengths (columns,))``: the forecast made at each column
        (its first ``lengths[col]`` values; 0: none), as :meth:`forecast_at` and :meth:`_ours`."""
        steps = HORIZON_H * 3600 // int(self.step_s)
        n = self.n_steps
        series = self.values[row]
        cols = np.arange(n)
        if mode == "oracle":
            padded = np.concatenate([series, np.full(steps, np.nan)])
            values = padded[cols[:, None] + np.arange(steps)[None, :]]
            return values, np.minimum(steps, n - cols)
        values = np.full((n, steps), np.nan)
        lengths = np.where(cols >= 2 * self._per_day, steps, 0)
        usable = cols[lengths > 0]
        window = HISTORY_DAYS * self._per_day
        names = np.array([self._model(row, int(c)) for c in usable]) if usable.size else usable
        for name in dict.fromkeys(names.tolist()):
            at = usable[names == name]
            values[at] = forecast_origins(
                series, int(self.step_s), at, model=name, window_steps=window, horizon_steps=steps
            )
        failed = usable[np.isnan(values[usable]).all(axis=1)]  # the model could not fit there
        if failed.size:
            values[failed] = forecast_origins(
                series,
                int(self.step_s),
                failed,
                model="seasonal_naive",
                window_steps=window,
                horizon_steps=steps,
            )
        return np.clip(values, 0.0, MAX_PLAUSIBLE_G_PER_KWH), lengths

    def _oracle(self, row: int, col: int) -> tuple[float, ...]:
        steps = HORIZON_H * 3600 // int(self.step_s)
        return tuple(float(v) for v in self.values[row, col : col + steps])

    def _ours(self, row: int, col: int) -> tuple[float, ...]:
        step_s = int(self.step_s)
        window = HISTORY_DAYS * self._per_day
        history = self.values[row, max(0, col - window) : col]
        if history.size < 2 * self._per_day:
            return ()  # a forecast needs two days of history (as forecast_readings)
        name = self._model(row, col)
        horizon = HORIZON_H * 3600 // step_s
        try:
            predicted = CANDIDATES[name]().fit(history, step_s).predict(horizon)
        except ConfigError:
            predicted = CANDIDATES["seasonal_naive"]().fit(history, step_s).predict(horizon)
        clipped = np.clip(predicted, 0.0, MAX_PLAUSIBLE_G_PER_KWH)
        return tuple(float(v) for v in clipped)

    def _model(self, row: int, col: int) -> str:
        """The model chosen by back-testing on the history before this period's first hour."""
        week = col // (RESELECT_EVERY_H * 3600 // int(self.step_s))
        key = (row, week)
        name = self._models.get(key)
        if name is None:
            period = RESELECT_EVERY_H * 3600 // int(self.step_s)
            first = max(week * period, 2 * self._per_day)
            window = HISTORY_DAYS * self._per_day
            history = self.values[row, max(0, first - window) : first]
            name = select_model(
                history, int(self.step_s), horizon_steps=min(HORIZON_H, self._per_day)
            ).name
            self._models[key] = name
            log.debug("forecast model for %s, week %d: %s", self.sites[row], week, name)
        return name


class TraceView:
    """The :class:`~caftm.control.observe.SignalView` of one simulated run, at its current time.

    The simulator moves :attr:`now_s` and :attr:`site`; readings are the trace's values at
    ``now_s`` (the grid step containing it), history the current site's values over the last
    ``history_steps`` steps since it arrived.
    """

    def __init__(
        self,
        traces: SiteTraces,
        site: str,
        mode: ForecastMode,
        *,
        history_steps: int = 48,
        keep_history: bool = True,
    ) -> None:
        self.traces = traces
        self.mode: ForecastMode = mode
        self.keep_history = keep_history
        self._now_s = traces.start_s
        self._col = traces.column(traces.start_s)
        self.arrived_s = traces.start_s
        self.history_steps = history_steps
        self._row = traces.index[site]
        self._site = site

    @property
    def now_s(self) -> float:
        """The simulated time, POSIX s."""
        return self._now_s

    @now_s.setter
    def now_s(self, now_s: float) -> None:
        self._now_s = now_s
        self._col = self.traces.column(now_s)

    @property
    def column(self) -> int:
        """The grid column containing :attr:`now_s`."""
        return self._col

    @property
    def site(self) -> str:
        """The site the run is at."""
        return self._site

    @site.setter
    def site(self, site: str) -> None:
        self._site = site
        self._row = self.traces.index[site]
        self.arrived_s = self._now_s

    @property
    def current_intensity_g_per_kwh(self) -> float:
        return float(self.traces.values[self._row, self._col])

    def intensities(self) -> Mapping[str, float]:
        return self.traces.readings(self._col)

    def outlooks(self, now_s: float) -> tuple[SiteOutlook, ...]:
        col = self._col if now_s == self._now_s else self.traces.column(now_s)
        return self.traces.outlooks(col, self.mode)

    def forecast_from(self, site: str, now_s: float) -> tuple[float, ...]:
        return self.traces.forecast(self.traces.index[site], now_s, self.mode)

    def history(self) -> tuple[float, ...]:
        if not self.keep_history:  # only a relative θ reads it; the caller knows
            return ()
        traces = self.traces
        last = traces.column(self.now_s)
        first = max(traces.column(self.arrived_s), last - self.history_steps + 1)
        return tuple(float(v) for v in traces.values[self._row, first : last + 1])


class LazyForecast(Sequence[float]):
    """An hourly forecast computed on first read (its length is known up front).

    Behaves as the tuple :attr:`SiteOutlook.forecast_g_per_kwh` holds: ``len``, truth, indexing,
    slicing (to a tuple), iteration and ``numpy.asarray``.
    """

    __slots__ = ("_col", "_length", "_mode", "_row", "_traces", "_values")

    def __init__(
        self, traces: SiteTraces, row: int, col: int, mode: ForecastMode, length: int
    ) -> None:
        self._traces, self._row, self._col, self._mode = traces, row, col, mode
        self._length = length
        self._values: tuple[float, ...] | None = None

    def _get(self) -> tuple[float, ...]:
        if self._values is None:
            self._values = self._traces.compute_forecast(self._row, self._col, self._mode)
            self._length = len(self._values)
        return self._values

    def __len__(self) -> int:
        return self._length

    def __bool__(self) -> bool:
        return self._length > 0

    @overload
    def __getitem__(self, index: int) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[float, ...]: ...

    def __getitem__(self, index: int | slice) -> float | tuple[float, ...]:
        return self._get()[index]

    def __iter__(self) -> Iterator[float]:
        return iter(self._get())

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        return np.asarray(self._get(), dtype=dtype)

    def __eq__(self, other: object) -> bool:
        return tuple(self._get()) == (tuple(other) if isinstance(other, Sequence) else other)

    def __hash__(self) -> int:
        return hash(self._get())

    def __repr__(self) -> str:
        return f"LazyForecast({self._traces.sites[self._row]}, column {self._col}, {self._mode})"
