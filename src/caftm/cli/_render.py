"""Rendering helpers shared by the CLI commands: rich tables, notes and matplotlib plots."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from rich.table import Table

from caftm.errors import ConfigError
from caftm.signals.base import Kind, Reading

#: Said under every output built on the embedded profiles.
SYNTHETIC_NOTE = (
    "synthetic typical-year profiles generated from Electricity Maps 2022 hourly statistics "
    "(ODbL, attribute 'Electricity Maps') — not measurements"
)
_TIME_FORMAT = "%Y-%m-%d %H:%M"


def is_synthetic(readings: Sequence[Reading], provider: str = "") -> bool:
    """Whether any reading (or the provider) comes from the embedded profiles."""
    return provider == "profile" or any(
        r.kind is Kind.SYNTHETIC or "synthetic" in r.source for r in readings
    )


def format_time(time: datetime) -> str:
    """``YYYY-MM-DD HH:MM`` in UTC."""
    return time.strftime(_TIME_FORMAT)


def readings_table(readings: Sequence[Reading], *, title: str, max_rows: int = 0) -> Table:
    """A table of readings: time (UTC), g/kWh, kind, source.

    With ``max_rows`` > 0 and more readings than that, the first and last halves are shown
    with one row saying how many are left out.
    """
    table = Table(title=title, title_justify="left")
    table.add_column("time (UTC)", no_wrap=True, min_width=16)
    table.add_column("g/kWh", justify="right", no_wrap=True, min_width=5)
    table.add_column("kind", no_wrap=True, min_width=9)
    table.add_column("source", ratio=1)
    shown: list[Reading | None] = list(readings)
    if 0 < max_rows < len(readings):
        head = max_rows // 2
        tail = max_rows - head
        shown = [*readings[:head], None, *readings[len(readings) - tail :]]
    for reading in shown:
        if reading is None:
            left_out = len(readings) - max_rows
            table.add_row("…", "", "", f"[dim]{left_out} rows left out (--max-rows 0 shows all)[/]")
            continue
        table.add_row(
            format_time(reading.time),
            f"{reading.intensity_g_per_kwh:.0f}",
            reading.kind.value,
            reading.source,
        )
    return table


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """Minimum, mean and maximum of a series of readings, and when the minimum falls."""

    count: int
    min_g_per_kwh: float
    mean_g_per_kwh: float
    max_g_per_kwh: float
    cleanest_time: datetime


def summarise(readings: Sequence[Reading]) -> SeriesSummary:
    """Summary of non-empty ``readings`` (the earliest cleanest time on ties).

    Raises:
        ConfigError: no readings.
    """
    if not readings:
        raise ConfigError("no readings to summarise in the requested range")
    values = [r.intensity_g_per_kwh for r in readings]
    cleanest = min(readings, key=lambda r: (r.intensity_g_per_kwh, r.time))
    return SeriesSummary(
        count=len(values),
        min_g_per_kwh=min(values),
        mean_g_per_kwh=sum(values) / len(values),
        max_g_per_kwh=max(values),
        cleanest_time=cleanest.time,
    )


def summary_line(summary: SeriesSummary) -> str:
    """One line: count, min/mean/max g/kWh and the cleanest hour."""
    return (
        f"{summary.count} readings: min {summary.min_g_per_kwh:.0f}, "
        f"mean {summary.mean_g_per_kwh:.0f}, max {summary.max_g_per_kwh:.0f} g/kWh; "
        f"cleanest at {format_time(summary.cleanest_time)} UTC"
    )


def check_plot_path(path: Path) -> Path:
    """``path`` when a PNG can be written there: checked before any work, by creating the file
    (and removing it again when it did not exist).

    Raises:
        ConfigError: not a ``.png`` name, its folder does not exist, or the file cannot be
            written there (read-only place, no permission).
    """
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--plot {path}: give a file name ending in .png")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"--plot {path}: folder {folder} does not exist; create it first")
    probe_writable(path)
    return path


def probe_writable(path: Path, *, option: str = "--plot") -> None:
    """Create ``path`` (and remove it again unless it existed) to prove it can be written.

    Raises:
        ConfigError: it cannot (the message says why: permission, read-only, a directory).
    """
    existed = path.exists()
    try:
        with path.open("ab"):
            pass
    except OSError as e:
        raise ConfigError(f"{option} {path}: cannot write there ({e.strerror or e})") from e
    if not existed:
        path.unlink(missing_ok=True)


def plot_readings(
    readings: Sequence[Reading],
    path: Path,
    *,
    zone: str,
    provider: str,
    what: str,
    now: datetime | None = None,
    threshold_g_per_kwh: float | None = None,
) -> Path:
    """Draw ``readings`` as a step plot into the PNG file ``path``.

    The title names the zone, the provider and, where it applies, that the data are synthetic.
    A vertical line marks ``now`` when it falls within the plotted span, and a horizontal one
    the threshold θ when one is given; a legend names them.

    Raises:
        ConfigError: nothing to plot, or the file cannot be written.
    """
    if not readings:
        raise ConfigError(f"nothing to plot for zone {zone}: no readings in the requested range")
    check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    synthetic = is_synthetic(readings, provider)
    title = f"{what} carbon intensity, zone {zone}, provider {provider}"
    if synthetic:
        generated = [r.source for r in readings if r.kind is Kind.SYNTHETIC] or [provider]
        title += f"\nsynthetic: {generated[0]}"
    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    try:
        times = [r.time for r in readings]
        values = [r.intensity_g_per_kwh for r in readings]
        if len(readings) > 1:  # draw the last step to its end, as the others
            times.append(times[-1] + (times[-1] - times[-2]))
            values.append(values[-1])
        # UTC wall-clock times as datetime64 (matplotlib's native date type; no tz needed).
        utc_times = np.array([t.replace(tzinfo=None) for t in times], dtype="datetime64[s]")
        basis = "/".join(dict.fromkeys(r.basis.value for r in readings))
        ax.step(
            utc_times,
            values,
            where="post",
            color="tab:green",
            linewidth=1.4,
            label=f"intensity ({basis})",
        )
        step = times[1] - times[0] if len(times) > 1 else timedelta(hours=1)
        if now is not None and times[0] - step <= now <= times[-1]:  # a forecast starts after now
            ax.axvline(
                np.datetime64(now.replace(tzinfo=None), "s"),  # type: ignore[arg-type]
                color="tab:blue",
                linestyle=":",
                linewidth=1.2,
                label=f"now ({format_time(now)} UTC)",
            )
        top = max(values)
        if threshold_g_per_kwh is not None:
            ax.axhline(
                threshold_g_per_kwh,
                color="tab:red",
                linestyle="--",
                linewidth=1.2,
                label=f"threshold θ {threshold_g_per_kwh:g} g/kWh",
            )
            top = max(top, threshold_g_per_kwh)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("time (UTC)")
        ax.set_ylabel("gCO2eq/kWh")
        ax.set_ylim(0, top * 1.1 + 1)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        fig.autofmt_xdate()
        fig.tight_layout()
        try:
            fig.savefig(path, format="png")
        except OSError as e:
            raise ConfigError(f"cannot write plot {path}: {e.strerror or e}") from e
    finally:
        plt.close(fig)
    return path
