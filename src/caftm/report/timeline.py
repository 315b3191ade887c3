"""A job's timeline: the intensity it ran under, site by site, with moves and pauses marked.

Drawn from the ledger alone: each measured window gives a time (the job's clock), a site and
the intensity there; the controller's events give the pauses (from entering ``paused`` to the
next run's start) and the legs give the moves. No line is drawn across a gap where nothing ran
(:class:`WindowGaps`: another leg, a recorded pause, or idle time far beyond the run's pace).
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from caftm.ledger.feed import Feed, Scope
from caftm.ledger.jobs import JobBook
from caftm.ledger.store import EventRecord
from caftm.records import State
from caftm.report.figures import save_png, time_axis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "JobTimeline",
    "WindowGaps",
    "job_path",
    "job_timeline",
    "plot_timeline",
    "timeline_figure",
]


@dataclass(frozen=True)
class JobTimeline:
    """What the plot shows for one job (times UTC on the job's clock)."""

    name: str
    points: list[tuple[datetime, str, float]]  # (time, site, gCO2eq/kWh)
    moves: list[tuple[datetime, datetime, str, str]]  # (left, arrived, from, to)
    pauses: list[tuple[datetime, datetime]]
    simulated: bool
    threshold_g_per_kwh: float | None = None
    gaps: list[bool] = field(default_factory=list)  # per point: nothing ran just before it


#: idle time counts as a gap past this many times the window's expected span
IDLE_FACTOR = 5.0
#: how many of a run's latest windows set its pace
PACE_WINDOWS = 32


class WindowGaps:
    """Decides, window by window in the order they were recorded, whether nothing ran just
    before each one: the job changed run (a move or a restart), a recorded pause began since
    the window before, or (for ledgers without events) the time since the window before is
    over :data:`IDLE_FACTOR` times what the run's pace predicts.

    The pace is the clock seconds per measured GPU second between a run's consecutive windows
    (median of its latest :data:`PACE_WINDOWS`): about 1 on the real clock, hundreds on an
    accelerated job clock (``CAFTM_CLOCK``), where windows lie grid minutes apart but each
    measures seconds. A run's second window has no pace to go by, so only a run change or a
    pause ends a line there. Only past windows decide, so fed incrementally (the dashboard) or
    all at once (the report) it gives the same answers.
    """

    def __init__(self, events: Iterable[EventRecord] = ()) -> None:
        self._last: tuple[float, str] | None = None  # the last window (end s, run)
        self._paces: deque[float] = deque(maxlen=PACE_WINDOWS)
        self._pauses: list[float] = []  # when each recorded pause began (s), sorted
        self.add_events(events)

    def add_events(self, events: Iterable[EventRecord]) -> None:
        """Note the pauses among ``events`` (give every event before the windows after it)."""
        for e in events:
            if e.to_state == State.PAUSED and e.from_state != State.PAUSED:
                bisect.insort(self._pauses, e.time.timestamp())

    def before(self, end_s: float, duration_s: float, run: str) -> bool:
        """Whether nothing ran between the last window given and this one (``end_s``: its end
        on the job's clock; ``duration_s``: its measured GPU seconds; ``run``: its run)."""
        last, self._last = self._last, (end_s, run)
        if last is None:
            return False
        last_end, last_run = last
        if run != last_run:
            self._paces.clear()
            return True
        k = bisect.bisect_left(self._pauses, last_end)
        if k < len(self._pauses) and self._pauses[k] < end_s:
            return True
        span_s = end_s - last_end
        if self._paces and duration_s > 0:
            expected_s = statistics.median(self._paces) * duration_s
            if span_s > IDLE_FACTOR * expected_s:
                return True
        if duration_s > 0:
            self._paces.append(span_s / duration_s)
        return False


def job_timeline(book: JobBook, name: str) -> JobTimeline:
    """Collect a job's windows, moves and pauses from the ledger."""
    threshold = book.get(name).spec.get("controller", {}).get("threshold", {})  # ConfigError
    theta = threshold.get("value_g_per_kwh") if threshold.get("mode") == "absolute" else None
    feed, scope = Feed(book.ledger), Scope.of_job(name)
    windows = sorted(feed.windows(scope), key=lambda w: (w.time, w.id))
    finder = WindowGaps(feed.events(scope))
    points: list[tuple[datetime, str, float]] = []
    gaps: list[bool] = []
    pending_gap = False
    for w in windows:
        pending_gap = finder.before(w.time.timestamp(), w.duration_s, w.run_id) or pending_gap
        if w.intensity_g_per_kwh is not None:
            points.append((w.time, w.site, w.intensity_g_per_kwh))
            gaps.append(pending_gap)
            pending_gap = False
    simulated = feed.simulated(scope)
    moves, pauses = job_path(book, name)
    return JobTimeline(name, points, moves, pauses, simulated, theta, gaps)


def job_path(
    book: JobBook, name: str
) -> tuple[list[tuple[datetime, datetime, str, str]], list[tuple[datetime, datetime]]]:
    """A job's moves ``(left, arrived, from, to)`` and pauses ``(start, end)``, from its
    runs' events alone (cheap: a few rows per leg, however many windows the job has)."""
    # each run is one leg: its first and last events bound it; between two legs the job moved
    # (the sites differ) or paused (the earlier one ended so)
    spans = Feed(book.ledger).run_spans(Scope.of_job(name))
    pauses: list[tuple[datetime, datetime]] = []
    moves: list[tuple[datetime, datetime, str, str]] = []
    for run, following in itertools.pairwise(spans):
        end, start = run.last_event, following.first_event
        if following.site != run.site:
            moves.append((end, start, run.site, following.site))
        elif "paused" in (run.end_reason or ""):
            pauses.append((end, start))
    return moves, pauses


def plot_timeline(book: JobBook, names: list[str], path: Path) -> Path:
    """Draw one panel per job into a PNG at ``path``; returns the path.

    Raises:
        ConfigError: an unknown job, or the PNG cannot be written there.
    """
    return save_png(timeline_figure(book, names), path, what="the timeline", dpi=110)


def timeline_figure(book: JobBook, names: list[str]) -> Figure:
    """One panel per job (a matplotlib figure on the Agg backend; the caller closes it).

    Raises:
        ConfigError: an unknown job.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timelines = [job_timeline(book, name) for name in names]
    fig, axes = plt.subplots(len(timelines), 1, figsize=(10, 3.2 * len(timelines)),
                             squeeze=False, layout="constrained")  # fmt: skip
    colours: dict[str, str] = {}
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, timeline in zip(axes[:, 0], timelines, strict=True):
        sites = list(dict.fromkeys(site for _, site, _ in timeline.points))
        for site in sites:
            colour = colours.setdefault(site, palette[len(colours) % len(palette)])
            xs, ys = _site_line(timeline, site)
            ax.plot(xs, ys, "o-", ms=3, lw=2, color=colour, label=f"at {site}")
        for start, end in timeline.pauses:
            ax.axvspan(start, end, color="0.85", zorder=0)
        if timeline.pauses:
            ax.plot([], [], color="0.85", lw=8, label="paused")
        for left, arrived, src, dst in timeline.moves:
            ax.axvspan(left, arrived, color="#cfe3f7", zorder=0)
            ax.axvline(left, color="k", ls="--", lw=1)
            ax.annotate(f"{src} → {dst}", (left, 1.0), xycoords=("data", "axes fraction"),
                        textcoords="offset points", xytext=(3, -12), fontsize=8)  # fmt: skip
        if timeline.moves:
            ax.plot([], [], color="#cfe3f7", lw=8, label="moving (checkpoint, copy, restart)")
        if timeline.threshold_g_per_kwh is not None:
            ax.axhline(timeline.threshold_g_per_kwh, color="tab:red", ls=":", lw=1,
                       label=f"θ {timeline.threshold_g_per_kwh:.0f}")  # fmt: skip
        simulated = " — SIMULATED GPU" if timeline.simulated else ""
        ax.set_title(f"job {timeline.name}: carbon intensity where it ran{simulated}", loc="left")
        ax.set_ylabel("gCO2eq/kWh")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=8)
        ax.grid(alpha=0.3)
        time_axis(ax)
        ax.set_xlabel("")
    axes[-1, 0].set_xlabel("time (UTC, the job's clock)")
    return fig


def _site_line(timeline: JobTimeline, site: str) -> tuple[list[datetime], list[float]]:
    """The points at ``site``, with NaN (a break in the line) wherever the job was elsewhere
    or nothing ran."""
    xs: list[datetime] = []
    ys: list[float] = []
    previous_here = False
    for k, (t, s, ci) in enumerate(timeline.points):
        here = s == site
        if here:
            gap = timeline.gaps[k] if k < len(timeline.gaps) else False
            if xs and (gap or not previous_here):
                xs.append(t)
                ys.append(float("nan"))
            xs.append(t)
            ys.append(ci)
        previous_here = here
    return xs, ys
