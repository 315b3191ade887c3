"""The report's figures as PNG bytes (matplotlib, Agg): sites' intensities with θ, the GPU
setting and power, and carbon so far against the carbon-agnostic baseline.

The job's path across sites is :func:`caftm.report.timeline.timeline_figure` (one home).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from caftm.report.carbon import SiteOutlook

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["carbon_png", "gpu_png", "outlook_png", "png_bytes", "series_png"]


def png_bytes(fig: Figure, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes; closes it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _axes(title: str, height: float = 3.0) -> tuple[Figure, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, height))
    ax.set_title(title, loc="left")
    ax.grid(alpha=0.3)
    return fig, ax


def outlook_png(
    outlooks: Sequence[SiteOutlook],
    threshold_g_per_kwh: float | None,
    *,
    span: tuple[datetime, datetime] | None = None,
    title: str = "intensity at each candidate site",
) -> bytes:
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
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    return png_bytes(fig)


def gpu_png(
    times: Sequence[datetime],
    setting: Sequence[float | None],
    power_w: Sequence[float | None],
    unit: str,
    *,
    title: str = "GPU setting and power",
) -> bytes:
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
    fig.legend(loc="upper right", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return png_bytes(fig)


def carbon_png(
    times: Sequence[datetime],
    carbon_cum_g: Sequence[float],
    agnostic: tuple[Sequence[datetime], Sequence[float]] | None,
    *,
    agnostic_label: str = "carbon-agnostic run (estimate)",
    title: str = "carbon so far against a carbon-agnostic run",
) -> bytes:
    """Cumulative carbon of the job and of the baseline (``(times, g)``, on its own times)."""
    fig, ax = _axes(title)
    ax.plot(times, carbon_cum_g, color="tab:green", lw=2, label="this job")
    if agnostic is not None:
        ax.plot(agnostic[0], agnostic[1], color="tab:red", ls="--", lw=1.5, label=agnostic_label)
    ax.set_ylabel("gCO2eq")
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    return png_bytes(fig)


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
    fig.autofmt_xdate()
    fig.tight_layout()
    return png_bytes(fig)
