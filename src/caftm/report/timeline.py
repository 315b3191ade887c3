"""A job's timeline: the intensity it ran under, site by site, with moves and pauses marked.

Drawn from the ledger alone: each measured window gives a time (the job's clock), a site and
the intensity there; the controller's events give the pauses (from entering ``paused`` to the
next run's start) and the legs give the moves. No line is drawn across a gap where nothing ran
(:func:`gap_before`: another leg, or idle time longer than a window).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from caftm.errors import ConfigError
from caftm.ledger.feed import Feed, Scope
from caftm.ledger.jobs import JobBook
from caftm.report.figures import time_axis

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "JobTimeline",
    "gap_before",
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


def gap_before(
    previous: tuple[float, float, str] | None, current: tuple[float, float, str]
) -> bool:
    """Whether nothing ran between two consecutive windows, each ``(end time s, duration s,
    run)``: another run (leg), or idle time longer than either window."""
    if previous is None:
        return False
    end, duration, run = previous
    now_end, now_duration, now_run = current
    idle_s = (now_end - now_duration) - end
    return now_run != run or idle_s > max(duration, now_duration)


def job_timeline(book: JobBook, name: str) -> JobTimeline:
    """Collect a job's windows, moves and pauses from the ledger."""
    threshold = book.get(name).spec.get("controller", {}).get("threshold", {})  # ConfigError
    theta = threshold.get("value_g_per_kwh") if threshold.get("mode") == "absolute" else None
    feed, scope = Feed(book.ledger), Scope.of_job(name)
    windows = sorted(feed.windows(scope), key=lambda w: (w.time, w.id))
    points: list[tuple[datetime, str, float]] = []
    gaps: list[bool] = []
    last: tuple[float, float, str] | None = None
    pending_gap = False
    for w in windows:
        this = (w.time.timestamp(), w.duration_s, w.run_id)
        pending_gap = pending_gap or gap_before(last, this)
        last = this
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
    import matplotlib.pyplot as plt

    fig = timeline_figure(book, names)
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise ConfigError(f"cannot write the timeline {path}: {e.strerror or e}") from e
    finally:
        plt.close(fig)
    return path


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
