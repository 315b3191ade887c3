"""The demo's figure: each carbon-aware job beside its carbon-agnostic twin, on the job's clock.

One column per job, three panels each:

1. the carbon intensity where it ran (one colour per site), θ, its pauses (grey bands) and
   moves (a dashed line labelled with the move and its duration on the job's clock);
2. the GPU setting it trained at (SM clock, MHz; the twin stays at the device default);
3. its carbon so far against its twin's.

Everything is read from the ledger. A line never joins two legs: between them the job was not
training (it moved, paused or restarted), so each array carries a NaN there and matplotlib
leaves the gap open. (Legs alone: a demo's pauses end its legs, so
:class:`~caftm.report.timeline.WindowGaps` would find the same gaps.)
:func:`job_track` gives those arrays, which tests read back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from caftm.ledger.feed import Feed, Scope
from caftm.ledger.jobs import JobBook
from caftm.report.figures import save_png, time_axis
from caftm.report.timeline import job_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["JobTrack", "date_number", "demo_figure", "job_track", "plot_demo"]

PAUSE_COLOUR = "0.85"
#: matplotlib's date epoch: a date number is days since it
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MOVE_COLOUR = "k"


@dataclass(frozen=True)
class JobTrack:
    """One job's measured windows as plot arrays, NaN between legs (one row per window end).

    Attributes:
        name: the job.
        times: window ends on the job's clock (matplotlib date numbers, days; NaN at a gap).
        legs: the leg of each row (0 at a gap).
        sites: the site of each row ("" at a gap).
        intensity_g_per_kwh: the intensity each window ran under.
        setting: the GPU setting of each window (NaN: device default).
        carbon_so_far_g: the job's carbon up to each window's end.
        moves: ``(left, arrived, from, to)`` on the job's clock.
        pauses: ``(start, end)`` on the job's clock.
        threshold_g_per_kwh: θ where absolute.
        deadline: the policy's deadline, where it has one.
        simulated: the GPU (or the signals) were simulated.
    """

    name: str
    times: np.ndarray
    legs: np.ndarray
    sites: list[str]
    intensity_g_per_kwh: np.ndarray
    setting: np.ndarray
    carbon_so_far_g: np.ndarray
    moves: list[tuple[datetime, datetime, str, str]]
    pauses: list[tuple[datetime, datetime]]
    threshold_g_per_kwh: float | None
    deadline: datetime | None
    simulated: bool

    @property
    def carbon_g(self) -> float:
        """The job's carbon over all its windows (g)."""
        finite = self.carbon_so_far_g[np.isfinite(self.carbon_so_far_g)]
        return float(finite[-1]) if finite.size else 0.0


def date_number(time: datetime) -> float:
    """``time`` as a matplotlib date number (days since 1970-01-01 UTC)."""
    return (time - _EPOCH).total_seconds() / 86400.0


def job_track(book: JobBook, name: str) -> JobTrack:
    """A job's windows, moves and pauses from the ledger as plot arrays (see :class:`JobTrack`).

    Raises:
        ConfigError: no such job.
    """
    job = book.get(name)
    threshold = job.spec.get("controller", {}).get("threshold", {})
    theta = threshold.get("value_g_per_kwh") if threshold.get("mode") == "absolute" else None
    deadline = job.spec.get("controller", {}).get("policy", {}).get("deadline")
    feed, scope = Feed(book.ledger), Scope.of_job(name)
    legs = {span.run_id: span.leg or 0 for span in feed.run_spans(scope)}
    windows = sorted(feed.windows(scope), key=lambda w: (w.time, w.id))
    rows: list[tuple[float, int, str, float, float, float]] = []
    carbon_g, previous_run = 0.0, None
    nan = float("nan")
    for w in windows:
        if previous_run is not None and w.run_id != previous_run:
            rows.append((nan, 0, "", nan, nan, nan))  # another leg: the job did not train between
        previous_run = w.run_id
        carbon_g += w.carbon_g or 0.0
        rows.append((
            date_number(w.time), legs.get(w.run_id, 0), w.site,
            nan if w.intensity_g_per_kwh is None else w.intensity_g_per_kwh,
            nan if w.setting is None else w.setting, carbon_g,
        ))  # fmt: skip
    columns = list(zip(*rows, strict=True)) if rows else [()] * 6
    moves, pauses = job_path(book, name)
    return JobTrack(
        name=name,
        times=np.array(columns[0], dtype=float),
        legs=np.array(columns[1], dtype=int),
        sites=list(columns[2]),
        intensity_g_per_kwh=np.array(columns[3], dtype=float),
        setting=np.array(columns[4], dtype=float),
        carbon_so_far_g=np.array(columns[5], dtype=float),
        moves=moves,
        pauses=pauses,
        threshold_g_per_kwh=theta,
        deadline=None if deadline is None else datetime.fromisoformat(deadline),
        simulated=feed.simulated(scope),
    )


def plot_demo(book: JobBook, pairs: list[tuple[str, str]], path: Path) -> Path:
    """Draw :func:`demo_figure` into a PNG at ``path``; returns the path.

    Raises:
        ConfigError: an unknown job, or the PNG cannot be written there.
    """
    return save_png(demo_figure(book, pairs), path, what="the demo figure")


def demo_figure(book: JobBook, pairs: list[tuple[str, str]]) -> Figure:
    """One column per ``(carbon-aware job, its carbon-agnostic twin)``: intensity where it ran,
    GPU setting, carbon so far against the twin (Agg backend; the caller closes the figure).

    Raises:
        ConfigError: an unknown job.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tracks = [(job_track(book, aware), job_track(book, twin)) for aware, twin in pairs]
    fig, axes = plt.subplots(3, len(tracks), figsize=(7.5 * len(tracks), 9.5), squeeze=False,
                             sharex="col")  # fmt: skip
    colours: dict[str, str] = {}
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for column, (aware, twin) in enumerate(tracks):
        where, gpu, carbon = axes[:, column]
        for site in dict.fromkeys(s for s in aware.sites if s):
            colour = colours.setdefault(site, palette[len(colours) % len(palette)])
            at_site = np.array([s == site for s in aware.sites])
            ys = np.where(at_site, aware.intensity_g_per_kwh, np.nan)
            where.plot(aware.times, ys, "o-", ms=2.5, lw=1.8, color=colour, label=f"at {site}")
        if aware.threshold_g_per_kwh is not None:
            where.axhline(aware.threshold_g_per_kwh, color="tab:red", ls=":", lw=1,
                          label=f"θ {aware.threshold_g_per_kwh:.0f}")  # fmt: skip
        where.set_ylabel("gCO2eq/kWh where it ran")
        gpu.plot(aware.times, aware.setting, drawstyle="steps-post", lw=1.5, color="tab:purple",
                 label=f"{aware.name}: SM clock")  # fmt: skip
        gpu.set_ylabel("GPU setting (MHz)")
        gpu.text(0.01, 0.04, f"{twin.name}: device default throughout", fontsize=8,
                 transform=gpu.transAxes)  # fmt: skip
        carbon.plot(aware.times, aware.carbon_so_far_g, lw=2, color="tab:green",
                    label=f"{aware.name} (carbon-aware)")  # fmt: skip
        carbon.plot(twin.times, twin.carbon_so_far_g, lw=2, color="0.4", ls="--",
                    label=f"{twin.name} (carbon-agnostic)")  # fmt: skip
        saving = 1 - aware.carbon_g / twin.carbon_g if twin.carbon_g else 0.0
        carbon.set_title(f"{aware.carbon_g:.3f} g against {twin.carbon_g:.3f} g "
                         f"({saving:.0%} less)", loc="left", fontsize=9)  # fmt: skip
        carbon.set_ylabel("carbon so far (g)")
        for ax in (where, gpu, carbon):
            _mark_path(ax, aware, label=ax is where)
            ax.grid(alpha=0.3)
            ax.legend(loc="best", fontsize=7, framealpha=0.8)
        simulated = " — SIMULATED GPU" if aware.simulated else ""
        where.set_title(f"job {aware.name} against {twin.name}{simulated}", loc="left")
        time_axis(carbon)
        carbon.set_xlabel("the job's clock (UTC, 24 h)")
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def _mark_path(ax: Any, track: JobTrack, *, label: bool) -> None:
    """Pauses as grey bands, moves as dashed lines (labelled on the top panel)."""
    if track.deadline is not None:
        ax.axvline(date_number(track.deadline), color="tab:red", ls="-.", lw=1.2,
                   label="deadline" if label else None)  # fmt: skip
    for start, end in track.pauses:
        ax.axvspan(date_number(start), date_number(end), color=PAUSE_COLOUR, zorder=0)
    if track.pauses and label:
        ax.plot([], [], color=PAUSE_COLOUR, lw=8, label="paused")
    for left, arrived, src, dst in track.moves:
        x = date_number(left)
        ax.axvspan(x, date_number(arrived), color="#cfe3f7", zorder=0)
        ax.axvline(x, color=MOVE_COLOUR, ls="--", lw=1)
        if label:
            took_s = (arrived - left).total_seconds()
            ax.annotate(f"{src} → {dst} ({took_s:.0f} s)", (x, 1.0),
                        xycoords=("data", "axes fraction"), textcoords="offset points",
                        xytext=(3, -12), fontsize=8)  # fmt: skip
