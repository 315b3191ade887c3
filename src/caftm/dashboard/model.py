"""What the dashboard shows, kept up to date from a read-only ledger by incremental queries.

:class:`Board` owns the read-only :class:`~caftm.ledger.Ledger`; per job (or bare run) a
:class:`Watch` keeps every window's few numbers in memory and reads only the rows added since it
last looked, so a poll of a 100,000-window job costs the new rows plus a thinning of the series
to at most ``max_points`` (the browser draws that many, never the whole ledger).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from caftm.errors import CaftmError, ConfigError
from caftm.ledger import EventRecord, JobBook, Ledger
from caftm.ledger.feed import Feed, Scope
from caftm.report.carbon import (
    BASELINE_ESTIMATE_TEXT,
    BASELINE_TWIN_TEXT,
    agnostic_window_carbon_g,
    signal_setup,
    site_outlooks,
)
from caftm.report.timeline import job_path

__all__ = ["Board", "Watch"]

logger = logging.getLogger(__name__)

_UNITS = {"clock": "MHz", "power": "W"}
MAX_EVENTS_SHOWN = 100


def _iso(time: datetime | None) -> str | None:
    return None if time is None else time.isoformat()


def thin(n: int, max_points: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Indices of at most ``max_points`` of ``n`` samples, evenly spread, first and last kept."""
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


class Watch:
    """One job's (or bare run's) view: its windows' numbers and events, read incrementally."""

    def __init__(self, board: Board, scope: Scope, *, max_points: int = 2000) -> None:
        self.board, self.scope, self.max_points = board, scope, max_points
        self.spec: dict[str, Any] = {}
        if scope.job is not None:
            self.spec = board.book.get(scope.job).spec  # ConfigError when unknown
        self.setup = signal_setup(self.spec)
        self._window_id = self._event_id = 0
        self.t: list[float] = []
        self.site: list[str] = []
        self.intensity: list[float] = []
        self.power_w: list[float] = []
        self.setting: list[float] = []
        self.carbon: list[float] = []
        self.agnostic: list[float] = []
        self.knob: str | None = None
        self.energy_j = self.carbon_g = self.agnostic_g = 0.0
        self.steps = 0
        self.events: list[EventRecord] = []
        self._outlook: tuple[int, list[dict[str, Any]]] | None = None
        threading.Thread(target=self.prepare, daemon=True, name="caftm-prepare").start()

    def refresh(self) -> bool:
        """Read what was added since the last call; True when anything was."""
        feed = self.board.feed
        rows = feed.windows(self.scope, after_id=self._window_id)
        events = feed.events(self.scope, after_id=self._event_id)
        if rows:
            if not self.setup.sites:  # a bare run: its sites are those its windows name
                self.setup = signal_setup({}, [r.site for r in rows])
            agnostic = agnostic_window_carbon_g(
                self.setup,
                [r.time for r in rows],
                [r.energy_j for r in rows],
                [(r.site, r.intensity_g_per_kwh) for r in rows],
            )
            nan = float("nan")
            for row, base in zip(rows, agnostic, strict=True):
                self.t.append(row.time.timestamp())
                self.site.append(row.site)
                self.intensity.append(nan if row.intensity_g_per_kwh is None
                                      else row.intensity_g_per_kwh)  # fmt: skip
                energy = row.energy_j or 0.0
                self.power_w.append(energy / row.duration_s if row.duration_s > 0 else nan)
                self.setting.append(nan if row.setting is None else row.setting)
                self.carbon.append(row.carbon_g or 0.0)
                self.agnostic.append(base)
                self.energy_j += energy
                self.carbon_g += row.carbon_g or 0.0
                self.agnostic_g += base
                self.steps += row.steps
                self.knob = row.knob or self.knob
            self._window_id = rows[-1].id
        if events:
            self.events.extend(events)
            self._event_id = events[-1].id
        return bool(rows or events)

    def prepare(self) -> None:
        """Load the intensity source for the job's sites and year (the embedded profiles take
        seconds to import and generate the first time): a job's first windows then show at once.
        """
        job = self.spec.get("job") or {}
        anchor = job.get("clock_start")
        when = datetime.fromisoformat(anchor) if anchor else datetime.now(UTC)
        if self.t:
            when = datetime.fromtimestamp(self.t[-1], UTC)
        try:
            self.outlook(when)  # history and forecast of every site: what a first view needs
            agnostic_window_carbon_g(self.setup, [when], [0.0], [(self.setup.start_site, None)])
        except CaftmError as e:
            logger.warning("cannot prepare the intensities of %s: %s", self.scope, e)

    def baseline(self) -> tuple[float | None, str]:
        """What a carbon-agnostic run would have emitted (g) and how that was found."""
        if self.scope.job is not None:
            twin = self.board.book.find(f"{self.scope.job}-agnostic")
            if twin is not None:
                carbon = self.board.book.totals(twin.name).carbon_g
                return carbon, BASELINE_TWIN_TEXT.format(twin=twin.name)
        if not self.t:
            return None, "no windows measured yet"
        return self.agnostic_g, BASELINE_ESTIMATE_TEXT.format(site=self.setup.start_site)

    def outlook(self, now: datetime) -> list[dict[str, Any]]:
        """The candidate sites around ``now`` (cached per hour of the job's clock)."""
        hour = int(now.timestamp()) // 3600
        if self._outlook is None or self._outlook[0] != hour:
            outlooks = site_outlooks(self.setup, now)
            self._outlook = (hour, [
                {"site": o.site, "zone": o.zone, "now": o.now_g_per_kwh, "kind": o.kind,
                 "t": [x.timestamp() for x in o.times], "v": o.values,
                 "forecast_from": o.forecast_from}
                for o in outlooks
            ])  # fmt: skip
        return self._outlook[1]

    def view(self) -> dict[str, Any]:
        """The whole view as JSON-able data (series thinned to ``max_points``)."""
        book, scope = self.board.book, self.scope
        job = book.get(scope.job) if scope.job is not None else None
        last_event = self.events[-1] if self.events else None
        sites = list(self.setup.sites) or list(dict.fromkeys(self.site))
        for site in dict.fromkeys(self.site):
            if site not in sites:
                sites.append(site)
        n = len(self.t)
        now = datetime.fromtimestamp(self.t[-1], UTC) if n else None
        index = thin(n, self.max_points)
        t = np.asarray(self.t)[index]
        positions = {s: i for i, s in enumerate(sites)}
        site_index = [positions[self.site[i]] for i in index]
        moves, pauses = job_path(book, scope.job) if scope.job is not None else ([], [])
        baseline_g, method = self.baseline()
        unit = _UNITS.get(self.knob or "", "")
        setting = self.setting[-1] if n else float("nan")
        return {
            "name": scope.job or scope.run_id,
            "kind": "job" if job is not None else "run",
            "status": job.status.value if job is not None else self._run_status(),
            "site": job.site if job is not None else (self.site[-1] if n else None),
            "state": last_event.to_state if last_event is not None else None,
            "leg": job.leg if job is not None else None,
            "moves": job.moves if job is not None else len(moves),
            "pauses": job.pauses if job is not None else len(pauses),
            "message": job.message if job is not None else "",
            "pause_until": _iso(job.pause_until) if job is not None else None,
            "now": _iso(now),
            "simulated": self.board.feed.simulated(scope),
            "synthetic": self.setup.synthetic,
            "source": self.setup.source_name,
            "threshold_g_per_kwh": self.setup.threshold_g_per_kwh,
            "start_site": self.setup.start_site,
            "sites": sites,
            "intensity_now": _finite(self.intensity[-1]) if n else None,
            "gpu": {
                "setting": _finite(setting),
                "unit": unit,
                "knob": self.knob,
                "power_w": _finite(self.power_w[-1]) if n else None,
            },
            "totals": {
                "windows": n,
                "steps": self.steps,
                "energy_j": self.energy_j,
                "carbon_g": self.carbon_g,
                "agnostic_g": baseline_g,
                "agnostic_method": method,
            },
            "series": {
                "t": t.tolist(),
                "site": site_index,
                "intensity": _list(self.intensity, index),
                "power_w": _list(self.power_w, index),
                "setting": _list(self.setting, index),
                "carbon_cum": _list(np.cumsum(self.carbon), index),
                "agnostic_cum": _list(np.cumsum(self.agnostic), index),
            },
            "move_marks": [
                {"left": a.timestamp(), "arrived": b.timestamp(), "from": s, "to": d}
                for a, b, s, d in moves
            ],
            "pause_marks": [{"start": a.timestamp(), "end": b.timestamp()} for a, b in pauses],
            "outlook": self.outlook(now) if now is not None else [],
            "events": [
                {
                    "id": e.id,
                    "time": _iso(e.time),
                    "from": e.from_state,
                    "to": e.to_state,
                    "reason": e.reason,
                    "site": e.site,
                    "intensity": e.intensity_g_per_kwh,
                    "setting": e.gpu_setting,
                }
                for e in reversed(self.events[-MAX_EVENTS_SHOWN:])
            ],
            "events_total": len(self.events),
        }

    def _run_status(self) -> str:
        run = self.board.ledger.run(str(self.scope.run_id))
        return run.status.value if run is not None else "unknown"


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _list(values: Any, index: np.ndarray[Any, np.dtype[np.int64]]) -> list[float | None]:
    """``values`` at ``index`` as a JSON list (NaN → null)."""
    picked = np.asarray(values, dtype=np.float64)[index]
    return [None if not np.isfinite(v) else float(v) for v in picked]


class Board:
    """The dashboard's data: a read-only ledger, its jobs and a :class:`Watch` per job shown.

    Raises:
        ConfigError: no ledger at ``path``, or not a caftm ledger.
    """

    def __init__(self, path: str | Path, *, max_points: int = 2000) -> None:
        self.ledger = Ledger(path, read_only=True)
        try:
            self.feed = Feed(self.ledger)
        except ConfigError:
            self.ledger.close()
            raise
        self.book = JobBook(self.ledger)
        self.max_points = max_points
        self._lock = threading.Lock()
        self._watches: dict[Scope, Watch] = {}
        self._views: dict[Scope, tuple[tuple[int, int, str], dict[str, Any]]] = {}
        self._jobs: tuple[tuple[int, int, str], list[dict[str, Any]]] | None = None

    def close(self) -> None:
        """Close the ledger."""
        self.ledger.close()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job (newest first) and every run outside a job, with their totals."""
        with self._lock:
            mark = self.feed.high_water()
            if self._jobs is not None and self._jobs[0] == mark:
                return self._jobs[1]
            out: list[dict[str, Any]] = []
            for job in self.book.jobs():
                totals = self.book.totals(job.name)
                out.append({"name": job.name, "kind": "job", "status": job.status.value,
                            "site": job.site, "moves": job.moves, "pauses": job.pauses,
                            "steps": totals.steps, "energy_j": totals.energy_j,
                            "carbon_g": totals.carbon_g})  # fmt: skip
            for run in self.ledger.runs(outside_jobs=True):
                out.append({"name": run.run_id, "kind": "run", "status": run.status.value,
                            "site": run.site, "moves": None, "pauses": None,
                            "steps": run.steps, "energy_j": run.energy_j,
                            "carbon_g": run.carbon_g})  # fmt: skip
            self._jobs = (mark, out)
            return out

    def warm(self) -> None:
        """Build every job's view once (pays the imports and the intensity profiles up front,
        so the first page is quick); failures are logged, not raised."""
        try:
            for job in self.jobs():
                if job["kind"] == "job":
                    self.view(Scope.of_job(job["name"]))
        except CaftmError as e:
            logger.warning("could not prepare the views: %s", e)

    def view(self, scope: Scope) -> tuple[tuple[int, int, str], dict[str, Any]]:
        """(the ledger's high-water mark, the view of ``scope`` at it).

        Raises:
            ConfigError: no such job or run.
        """
        with self._lock:
            mark = self.feed.high_water()
            cached = self._views.get(scope)
            if cached is not None and cached[0] == mark:
                return cached
            watch = self._watches.get(scope)
            if watch is None:
                if scope.run_id is not None and self.ledger.run(scope.run_id) is None:
                    raise ConfigError(f"no run {scope.run_id!r} in ledger {self.ledger.shown}")
                watch = self._watches[scope] = Watch(self, scope, max_points=self.max_points)
            watch.refresh()
            view = watch.view()
            self._views[scope] = (mark, view)
            return mark, view
