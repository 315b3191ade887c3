"""A job's timeline: the intensity it ran under, site by site, with moves and pauses marked.

Drawn from the ledger alone: each measured window gives a time (the job's clock), a site and
the intensity there; the controller's events give the pauses (from entering ``paused`` to the
next run's start) and the legs give the moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from caftm.errors import ConfigError
from caftm.ledger.jobs import JobBook

__all__ = ["JobTimeline", "job_timeline", "plot_timeline"]


@dataclass(frozen=True)
class JobTimeline:
    """What the plot shows for one job (times UTC on the job's clock)."""

    name: str
    points: list[tuple[datetime, str, float]]  # (time, site, gCO2eq/kWh)
    moves: list[tuple[datetime, str, str]]  # (time, from, to)
    pauses: list[tuple[datetime, datetime]]
    simulated: bool


def job_timeline(book: JobBook, name: str) -> JobTimeline:
    """Collect a job's windows, moves and pauses from the ledger."""
    book.get(name)  # ConfigError when unknown
    read = book.ledger._read
    points = [
        (datetime.fromisoformat(t), site, ci)
        for t, site, ci in read(
            "SELECT w.time, w.site, w.intensity_g_per_kwh FROM windows w JOIN runs r"
            " ON r.run_id = w.run_id WHERE r.job = ? AND w.intensity_g_per_kwh IS NOT NULL"
            " ORDER BY w.time, w.id",
            (name,),
        )
    ]
    events = read(
        "SELECT e.time, e.to_state, e.reason, e.site FROM events e JOIN runs r"
        " ON r.run_id = e.run_id WHERE r.job = ? ORDER BY e.time, e.id",
        (name,),
    )
    simulated = any(bool(s) for (s,) in read("SELECT simulated FROM runs WHERE job = ?", (name,)))
    pauses: list[tuple[datetime, datetime]] = []
    moves: list[tuple[datetime, str, str]] = []
    paused_at: datetime | None = None
    last_site: str | None = None
    for text, to_state, reason, site in events:
        when = datetime.fromisoformat(text)
        if to_state == "paused" and paused_at is None:
            paused_at = when
        elif reason == "run started":
            if paused_at is not None:
                pauses.append((paused_at, when))
                paused_at = None
            if last_site is not None and site != last_site:
                moves.append((when, last_site, site))
        last_site = site
    return JobTimeline(name, points, moves, pauses, simulated)


def plot_timeline(book: JobBook, names: list[str], path: Path) -> Path:
    """Draw one panel per job into a PNG at ``path``; returns the path.

    Raises:
        ConfigError: an unknown job, or the PNG cannot be written there.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timelines = [job_timeline(book, name) for name in names]
    fig, axes = plt.subplots(len(timelines), 1, figsize=(10, 3.2 * len(timelines)), squeeze=False)
    colours: dict[str, str] = {}
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, timeline in zip(axes[:, 0], timelines, strict=True):
        sites = list(dict.fromkeys(site for _, site, _ in timeline.points))
        for site in sites:
            colour = colours.setdefault(site, palette[len(colours) % len(palette)])
            xs = [t for t, s, _ in timeline.points if s == site]
            ys = [ci for _, s, ci in timeline.points if s == site]
            ax.plot(xs, ys, "o-", ms=3, lw=2, color=colour, label=f"at {site}")
        for start, end in timeline.pauses:
            ax.axvspan(start, end, color="0.85", zorder=0)
        if timeline.pauses:
            ax.plot([], [], color="0.85", lw=8, label="paused")
        for when, src, dst in timeline.moves:
            ax.axvline(when, color="k", ls="--", lw=1)
            ax.annotate(f"{src} → {dst}", (when, ax.get_ylim()[1]), textcoords="offset points",
                        xytext=(3, -12), fontsize=8)  # fmt: skip
        simulated = " — SIMULATED GPU" if timeline.simulated else ""
        ax.set_title(f"job {timeline.name}: carbon intensity where it ran{simulated}", loc="left")
        ax.set_ylabel("gCO2eq/kWh")
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("time (UTC, the job's clock)")
    fig.autofmt_xdate()
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise ConfigError(f"cannot write the timeline {path}: {e.strerror or e}") from e
    finally:
        plt.close(fig)
    return path
