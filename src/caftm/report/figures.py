"""The report's figures (matplotlib, Agg): sites' intensities with θ, the GPU setting and
power, and carbon so far against the carbon-agnostic baseline; ``*_figure`` builds one (the
caller closes it), ``*_png`` its PNG bytes.

Every legend stands outside the plotting area (constrained layout makes room for it), so it
never covers data; time axes read 24 h UTC (``time (UTC)``), as the event log does. The job's
path across sites is :func:`caftm.report.timeline.timeline_figure` (one home).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from caftm.errors import ConfigError
from caftm.report.carbon import SiteOutlook

if TYPE_CHECKING:
    from pathlib import Path

    from matplotlib.figure import Figure

__all__ = [
    "carbon_figure",
    "carbon_png",
    "gpu_figure",
    "gpu_png",
    "legend_outside",
    "outlook_figure",
    "outlook_png",
    "png_bytes",
    "save_png",
    "series_png",
    "time_axis",
]


def png_bytes(fig: Figure, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes; closes it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def save_png(fig: Figure, path: Path, *, what: str, dpi: int = 100) -> Path:
    """Write the figure to ``path`` as PNG and close it; returns the path.

    Raises:
        ConfigError: it cannot be written there (``what`` names the figure in the message).
    """
    import matplotlib.pyplot as plt

    try:
        fig.savefig(path, dpi=dpi, format="png")
    except OSError as e:
        raise ConfigError(f"cannot write {what} {path}: {e.strerror or e}") from e
    finally:
        plt.close(fig)
    return path


def _axes(title: str, height: float = 3.0) -> tuple[Figure, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, height), layout="constrained")
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3)
    return fig, ax


def time_axis(ax: Any) -> None:
    """A time x axis in 24 h UTC, labelled so (matplotlib's dates are UTC unless told)."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    concise = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(concise)
    ax.set_xlabel("time (UTC)")


def legend_outside(fig: Figure, *axes: Any) -> None:
    """One legend for ``axes``' labelled lines, right of the plot (never over the data)."""
    handles: list[Any] = []
    labels: list[str] = []
    for ax in axes:
        h, label = ax.get_legend_handles_labels()
        handles += h
        labels += label
    if handles:
        fig.legend(handles, labels, loc="outside right upper", fontsize=8)


def outlook_png(
    outlooks: Sequence[SiteOutlook],
    threshold_g_per_kwh: float | None,
    *,
    span: tuple[datetime, datetime] | None = None,
    title: str = "intensity at each candidate site",
) -> bytes:
    """:func:`outlook_figure` as PNG bytes."""
    return png_bytes(outlook_figure(outlooks, threshold_g_per_kwh, span=span, title=title))


def outlook_figure(
    outlooks: Sequence[SiteOutlook],
    threshold_g_per_kwh: float | None,
    *,
    span: tuple[datetime, datetime] | None = None,
    title: str = "intensity at each candidate site",
) -> Figure:
    """Each site's intensity (solid: history, dotted: forecast), θ dashed, the job's span shaded."""
    fig, ax = _axes(title)
    for o in outlooks:
        if not o.times:
            continue
        (line,) = ax.plot(
            o.times[: o.forecast_from + 1],
            o.values[: o.forecast_from + 1],
            lw=1.5,
            label=f"{o.site} ({o.kind})",
        )
        if o.forecast_from < len(o.times):
            ax.plot(
                o.times[o.forecast_from :],
                o.values[o.forecast_from :],
                ls=":",
                lw=1.5,
                color=line.get_color(),
            )
    if threshold_g_per_kwh is not None:
        ax.axhline(
            threshold_g_per_kwh,
            color="tab:red",
            ls="--",
            lw=1,
            label=f"θ {threshold_g_per_kwh:.0f}",
        )
    if span is not None:
        ax.axvspan(span[0], span[1], color="0.92", zorder=0, label="the job ran")
    ax.set_ylabel("gCO2eq/kWh")
    time_axis(ax)
    legend_outside(fig, ax)
    return fig


def gpu_png(
    times: Sequence[datetime],
    setting: Sequence[float | None],
    power_w: Sequence[float | None],
    unit: str,
    *,
    title: str = "GPU setting and power",
) -> bytes:
    """:func:`gpu_figure` as PNG bytes."""
    return png_bytes(gpu_figure(times, setting, power_w, unit, title=title))


def gpu_figure(
    times: Sequence[datetime],
    setting: Sequence[float | None],
    power_w: Sequence[float | None],
    unit: str,
    *,
    title: str = "GPU setting and power",
) -> Figure:
    """The GPU setting (step, left axis, ``unit``) and power (W, right axis) over time."""
    fig, ax = _axes(title)
    nan = float("nan")
    ax.step(
        times,
        [nan if s is None else s for s in setting],
        where="post",
        color="tab:purple",
        label=f"setting ({unit or 'default'})",
    )
    ax.set_ylabel(f"setting ({unit})" if unit else "setting")
    right = ax.twinx()
    right.plot(
        times,
        [nan if p is None else p for p in power_w],
        color="tab:green",
        lw=1,
        label="power (W)",
    )
    right.set_ylabel("power (W)")
    time_axis(ax)
    legend_outside(fig, ax, right)
    return fig


def carbon_png(
    times: Sequence[datetime],
    carbon_cum_g: Sequence[float],
    agnostic: tuple[Sequence[datetime], Sequence[float]] | None,
    *,
    agnostic_label: str = "carbon-agnostic run (estimate)",
    title: str = "carbon so far against a carbon-agnostic run",
) -> bytes:
    """:func:`carbon_figure` as PNG bytes."""
    return png_bytes(
        carbon_figure(times, carbon_cum_g, agnostic, agnostic_label=agnostic_label, title=title)
    )


def carbon_figure(
    times: Sequence[datetime],
    carbon_cum_g: Sequence[float],
    agnostic: tuple[Sequence[datetime], Sequence[float]] | None,
    *,
    agnostic_label: str = "carbon-agnostic run (estimate)",
    title: str = "carbon so far against a carbon-agnostic run",
) -> Figure:
    """Cumulative carbon of the job and of the baseline (``(times, g)``, on its own times)."""
    fig, ax = _axes(title)
    ax.plot(times, carbon_cum_g, color="tab:green", lw=2, label="this job")
    if agnostic is not None:
        ax.plot(agnostic[0], agnostic[1], color="tab:red", ls="--", lw=1.5, label=agnostic_label)
    ax.set_ylabel("gCO2eq")
    time_axis(ax)
    legend_outside(fig, ax)
    return fig


def series_png(
    times: Sequence[datetime],
    values: Sequence[float | None],
    *,
    ylabel: str,
    title: str,
) -> bytes:
    """One plain series over time (a bare run's intensity where it ran)."""
    fig, ax = _axes(title)
    ax.plot(times, [float("nan") if v is None else v for v in values], "o-", ms=3)
    ax.set_ylabel(ylabel)
    time_axis(ax)
    return png_bytes(fig)
