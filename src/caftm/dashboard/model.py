"""What the dashboard shows, kept up to date from a read-only ledger by incremental queries.

:class:`Board` owns the read-only :class:`~caftm.ledger.Ledger`; per job (or bare run) a
:class:`Watch` keeps every window's few numbers in memory and reads only the rows added since it
last looked, so a poll of a 100,000-window job costs the new rows plus a thinning of the series
to at most ``max_points`` (the browser draws that many, never the whole ledger).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from caftm.dashboard.series import gapped_index, thin
from caftm.errors import CaftmError, ConfigError
from caftm.ledger import EventRecord, JobBook, JobStatus, Ledger
from caftm.ledger.feed import Feed, Scope
from caftm.report.carbon import (
    BASELINE_ESTIMATE_TEXT,
    BASELINE_TWIN_TEXT,
    agnostic_window_carbon_g,
    back_to_back_times,
    signal_setup,
    site_outlooks,
)
from caftm.report.timeline import WindowGaps, job_path

__all__ = ["Board", "Watch", "shown_state", "thin", "utc_text"]

logger = logging.getLogger(__name__)

_UNITS = {"clock": "MHz", "power": "W"}
MAX_EVENTS_SHOWN = 100


def _iso(time: datetime | None) -> str | None:
    return None if time is None else time.isoformat()


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
        self.gap: list[bool] = []  # nothing ran between the window before and this one
        self.intensity: list[float] = []
        self.power_w: list[float] = []
        self.setting: list[float] = []
        self.carbon: list[float] = []
        self.agnostic: list[float] = []
        self.agnostic_t: list[float] = []  # when the carbon-agnostic run reached each window
        self.knob: str | None = None
        self.energy_j = self.carbon_g = self.agnostic_g = self.busy_s = 0.0
        self.steps = 0
        self.events: list[EventRecord] = []
        self._gaps = WindowGaps()
        self._origin: datetime | None = None  # the first window's start
        self._outlook: tuple[int, list[dict[str, Any]]] | None = None
        self.plan: dict[str, Any] | None = None  # a planning policy's newest recorded plan
        threading.Thread(target=self.prepare, daemon=True, name="caftm-prepare").start()

    def refresh(self) -> bool:
        """Read what was added since the last call; True when anything was."""
        feed = self.board.feed
        rows = feed.windows(self.scope, after_id=self._window_id)
        events = feed.events(self.scope, after_id=self._event_id)
        self._gaps.add_events(events)  # read after the windows: a pause before any of them
        if rows:
            if not self.setup.sites:  # a bare run: its sites are those its windows name
                self.setup = signal_setup({}, [r.site for r in rows])
            if self._origin is None:
                self._origin = rows[0].time - timedelta(seconds=rows[0].duration_s)
            durations = [r.duration_s for r in rows]
            when = back_to_back_times(self._origin, durations, before_s=self.busy_s)
            agnostic = agnostic_window_carbon_g(
                self.setup, when, [r.energy_j for r in rows],
                [(r.site, r.intensity_g_per_kwh) for r in rows],
            )  # fmt: skip
            self.busy_s += sum(durations)
            nan = float("nan")
            for row, base, at in zip(rows, agnostic, when, strict=True):
                end = row.time.timestamp()
                self.gap.append(self._gaps.before(end, row.duration_s, row.run_id))
                self.t.append(end)
                self.site.append(row.site)
                self.intensity.append(nan if row.intensity_g_per_kwh is None
                                      else row.intensity_g_per_kwh)  # fmt: skip
                energy = row.energy_j or 0.0
                self.power_w.append(energy / row.duration_s if row.duration_s > 0 else nan)
                self.setting.append(nan if row.setting is None else row.setting)
                self.carbon.append(row.carbon_g or 0.0)
                self.agnostic.append(base)
                self.agnostic_t.append(at.timestamp())
                self.energy_j += energy
                self.carbon_g += row.carbon_g or 0.0
                self.agnostic_g += base
                self.steps += row.steps
                self.knob = row.knob or self.knob
            self._window_id = rows[-1].id
        if events:
            self.events.extend(events)
            self._event_id = events[-1].id
        plan = self._latest_plan()
        changed_plan = plan != self.plan
        self.plan = plan
        return bool(rows or events or changed_plan)

    def _latest_plan(self) -> dict[str, Any] | None:
        """The newest plan recorded for the job (or run), as the page shows it."""
        ledger = self.board.ledger
        if self.scope.job is not None:
            record = ledger.latest_plan(job=self.scope.job)
        else:
            record = ledger.latest_plan(run_id=self.scope.run_id)
        if record is None:
            return None
        deadline = record.get("deadline_s")
        due = None if deadline is None else datetime.fromtimestamp(float(deadline), UTC)
        return {"summary": str(record.get("summary") or "no plan"), "deadline": utc_text(due)}

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

    def fingerprint(self) -> str:
        """A short digest of everything the view is made of: equal digests, equal views (the
        page's ETag; a finished job keeps its digest while other jobs write)."""
        parts: list[object] = [self._window_id, self._event_id, self.baseline(), self.plan]
        if self.scope.job is not None:
            job = self.board.book.get(self.scope.job)
            parts += [job.updated_at.isoformat(), job.status.value, job.site, job.message]
        else:
            parts.append(self._run_status())
        return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]

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
        """The whole view as JSON-able data (series thinned to ``max_points``, gaps as null)."""
        book, scope = self.board.book, self.scope
        job = book.get(scope.job) if scope.job is not None else None
        last_event = self.events[-1] if self.events else None
        sites = list(self.setup.sites) or list(dict.fromkeys(self.site))
        for site in dict.fromkeys(self.site):
            if site not in sites:
                sites.append(site)
        n = len(self.t)
        now = datetime.fromtimestamp(self.t[-1], UTC) if n else None
        index = gapped_index(n, self.gap, self.max_points)
        windows = [i for i in index if i is not None]
        positions = {s: i for i, s in enumerate(sites)}
        moves, pauses = job_path(book, scope.job) if scope.job is not None else ([], [])
        move_marks: list[dict[str, Any]] = [
            {"left": a.timestamp(), "arrived": b.timestamp(), "from": s, "to": d, "open": False}
            for a, b, s, d in moves
        ]
        pause_marks: list[dict[str, Any]] = [
            {"start": a.timestamp(), "end": b.timestamp(), "open": False} for a, b in pauses
        ]
        if job is not None and last_event is not None:  # a pause or move happening now
            since = last_event.time.timestamp()
            if job.status is JobStatus.PAUSED:
                until = job.pause_until.timestamp() if job.pause_until is not None else None
                pause_marks.append({"start": since, "end": until, "open": True})
            elif job.status is JobStatus.MOVING:
                to = job.site if job.site != last_event.site else None
                move_marks.append(
                    {"left": since, "arrived": None, "from": last_event.site, "to": to,
                     "open": True}
                )  # fmt: skip
        baseline_g, method = self.baseline()
        unit = _UNITS.get(self.knob or "", "")
        setting, setting_time = self._setting_in_force()
        controller = last_event.to_state.value if last_event is not None else None
        return {
            "name": scope.job or scope.run_id,
            "kind": "job" if job is not None else "run",
            "status": job.status.value if job is not None else self._run_status(),
            "site": job.site if job is not None else (self.site[-1] if n else None),
            "state": shown_state(job.status if job is not None else None, controller),
            "controller_state": controller,
            "leg": job.leg if job is not None else None,
            "moves": job.moves if job is not None else len(moves),
            "pauses": job.pauses if job is not None else len(pauses),
            "message": job.message if job is not None else "",
            "pause_until": _iso(job.pause_until) if job is not None else None,
            "pause_until_text": utc_text(job.pause_until) if job is not None else None,
            "now": _iso(now),
            "simulated": self.board.feed.simulated(scope),
            "synthetic": self.setup.synthetic,
            "source": self.setup.source_name,
            "threshold_g_per_kwh": self.setup.threshold_g_per_kwh,
            "start_site": self.setup.start_site,
            "sites": sites,
            "intensity_now": _finite(self.intensity[-1]) if n else None,
            "gpu": {
                "setting": setting,
                "since": utc_text(setting_time),
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
                "t": _times(self.t, index),
                "site": [None if i is None else positions[self.site[i]] for i in index],
                "intensity": _pick(self.intensity, index),
                "power_w": _pick(self.power_w, index),
                "setting": _pick(self.setting, index),
                "carbon_cum": _pick(np.cumsum(self.carbon), index),
            },
            "agnostic_series": {  # on its own times: the back-to-back run ends earlier
                "t": _pick(self.agnostic_t, windows),
                "carbon_cum": _pick(np.cumsum(self.agnostic), windows),
            },
            "move_marks": move_marks,
            "pause_marks": pause_marks,
            "outlook": self.outlook(now) if now is not None else [],
            "plan": self.plan,  # a planning policy's newest plan (None: no plan recorded)
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

    def _setting_in_force(self) -> tuple[float | None, datetime | None]:
        """The GPU setting the newest record holds (None: device default) and its time: the
        newest event (the controller's decision, as the event log shows it) unless a window
        measured after it (a window at the same time as an event predates the decision)."""
        event = self.events[-1] if self.events else None
        window_time = self.t[-1] if self.t else None
        if event is not None and (window_time is None or event.time.timestamp() >= window_time):
            return event.gpu_setting, event.time
        if window_time is None:
            return None, None
        return _finite(self.setting[-1]), datetime.fromtimestamp(window_time, UTC)

    def _run_status(self) -> str:
        run = self.board.ledger.run(str(self.scope.run_id))
        return run.status.value if run is not None else "unknown"


def shown_state(status: JobStatus | None, controller: str | None) -> str | None:
    """What the state card says: the controller's state while a leg runs; between legs (the
    last run ended, its controller ``done``) what the job is doing: paused, moving, restarting."""
    if status in (JobStatus.PAUSED, JobStatus.MOVING, JobStatus.RESTARTING):
        return status.value
    if status is not None and status.finished:
        return status.value
    return controller


def utc_text(time: datetime | None) -> str | None:
    """``2026-06-15 18:00 UTC``: a time as the page and the event log show it (24 h, UTC)."""
    return None if time is None else f"{time.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _pick(values: Any, index: Sequence[int | None]) -> list[float | None]:
    """``values`` at ``index`` as a JSON list (NaN and a None index → null)."""
    array = np.asarray(values, dtype=np.float64)
    out: list[float | None] = []
    for i in index:
        v = None if i is None else float(array[i])
        out.append(v if v is not None and np.isfinite(v) else None)
    return out


def _times(t: Sequence[float], index: Sequence[int | None]) -> list[float]:
    """The x values: each window's time, and a gap's point halfway between its neighbours."""
    out: list[float] = []
    for k, i in enumerate(index):
        if i is not None:
            out.append(t[i])
        else:
            before, after = index[k - 1], index[k + 1]
            assert before is not None and after is not None  # a gap lies between two windows
            out.append((t[before] + t[after]) / 2)
    return out


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
        self._views: dict[Scope, tuple[tuple[int, int, str], str, dict[str, Any]]] = {}
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

    def view(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        """(the view's digest, the view of ``scope``): the digest changes only when the view
        does, whatever other jobs write (see :meth:`Watch.fingerprint`).

        Raises:
            ConfigError: no such job or run.
        """
        with self._lock:
            mark = self.feed.high_water()
            cached = self._views.get(scope)
            if cached is not None and cached[0] == mark:
                return cached[1], cached[2]
            watch = self._watches.get(scope)
            if watch is None:
                if scope.run_id is not None and self.ledger.run(scope.run_id) is None:
                    raise ConfigError(f"no run {scope.run_id!r} in ledger {self.ledger.path}")
                watch = self._watches[scope] = Watch(self, scope, max_points=self.max_points)
            watch.refresh()
            digest = watch.fingerprint()
            view = cached[2] if cached is not None and cached[1] == digest else watch.view()
            self._views[scope] = (mark, digest, view)
            return digest, view
