"""PNG plots of a simulation: carbon per policy, one job's site/state timeline, and each site's
intensity with the job's path drawn on it. Every title says SIMULATED (and SYNTHETIC when the
trace is generated, ORACLE for policies that see the future); every figure's footer (and its PNG
``Description`` text) holds the notes: the basis, how times were read as UTC, what the loader
and the simulator assumed (:meth:`~caftm.sim.site_traces.SiteTraces.assumptions` by default).
Uses matplotlib's Agg backend."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from caftm.errors import ConfigError
from caftm.sim.engine import JobResult
from caftm.sim.site_traces import SiteTraces

log = logging.getLogger(__name__)

_KIND_ALPHA = {"train": 0.9, "pause": 0.35, "move": 0.15}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, notes: Sequence[str]) -> Path:
    """Lay ``fig`` out with ``notes`` as a footer and write it, the notes also as PNG text."""
    width_in, height_in = fig.get_size_inches()
    lines = [part for note in notes for part in textwrap.wrap(note, int(width_in * 19)) or [""]]
    footer_in = 0.11 * len(lines) + 0.08 if lines else 0.0
    fig.set_size_inches(width_in, height_in + footer_in)
    fig.tight_layout(rect=(0.0, footer_in / (height_in + footer_in), 1.0, 1.0))
    if lines:
        fig.text(0.005, 0.005, "\n".join(lines), fontsize=6.5, color="#444", va="bottom")
    try:
        fig.savefig(path, format="png", metadata={"Description": "\n".join(notes)})
    except OSError as e:
        raise ConfigError(f"cannot write plot {path}: {e.strerror or e}") from e
    return path


def _tag(traces: SiteTraces) -> str:
    return "SIMULATED on a SYNTHETIC trace" if traces.synthetic else "SIMULATED on a real trace"


def _hours(times_s: Any, origin_s: float) -> Any:
    return (np.asarray(times_s, dtype=float) - origin_s) / 3600.0


def plot_carbon(
    totals_kg: dict[str, float],
    path: Path,
    *,
    traces: SiteTraces,
    oracle: Sequence[str] = (),
    notes: Sequence[str] | None = None,
) -> Path:
    """Bar chart of total carbon (kg) per policy (and the optimum) into ``path``."""
    plt = _pyplot()
    names = list(totals_kg)
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    try:
        colors = ["tab:gray" if n == "optimum" else "tab:green" for n in names]
        ax.bar(range(len(names)), [totals_kg[n] for n in names], color=colors)
        labels = [f"{n}\n(ORACLE)" if n in oracle else n for n in names]
        ax.set_xticks(range(len(names)), labels, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"carbon, kgCO2eq (all jobs; {traces.basis_label})")
        ax.set_title(f"Carbon per policy — {_tag(traces)}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        return _save(fig, path, traces.assumptions() if notes is None else notes)
    finally:
        plt.close(fig)


def plot_timeline(
    results: Sequence[JobResult],
    path: Path,
    *,
    traces: SiteTraces,
    notes: Sequence[str] | None = None,
) -> Path:
    """One row per policy: where the job was (colour = site) and what it did (training solid,
    paused pale, moving faint) over its hours."""
    if not results:
        raise ConfigError("nothing to plot: no simulated job")
    plt = _pyplot()
    origin = results[0].job.start_s
    colors = {s: plt.get_cmap("tab10")(i % 10) for i, s in enumerate(traces.sites)}
    fig, ax = plt.subplots(figsize=(10, 0.5 * len(results) + 1.8), dpi=100)
    try:
        for row, result in enumerate(results):
            for seg in result.segments:
                ax.barh(
                    row,
                    (seg.end_s - seg.start_s) / 3600.0,
                    left=(seg.start_s - origin) / 3600.0,
                    color=colors[seg.site],
                    alpha=_KIND_ALPHA.get(seg.kind, 0.9),
                    height=0.7,
                )
        ax.set_yticks(range(len(results)), [r.policy for r in results], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("hours since the job started (solid: training, pale: paused)")
        handles = [plt.Rectangle((0, 0), 1, 1, color=colors[s]) for s in traces.sites]
        ax.legend(handles, traces.sites, fontsize=7, loc="lower right", ncol=len(traces.sites))
        job = results[0].job
        ax.set_title(
            f"One {job.gpu_hours:g} GPU-h job from {job.start_site} — {_tag(traces)}", fontsize=10
        )
        return _save(fig, path, traces.assumptions() if notes is None else notes)
    finally:
        plt.close(fig)


def plot_path(
    result: JobResult, path: Path, *, traces: SiteTraces, notes: Sequence[str] | None = None
) -> Path:
    """Each site's intensity over the job's window, with the job's path (the site it drew power
    at) drawn over it."""
    plt = _pyplot()
    job = result.job
    end_s = max(job.deadline_s, result.finish_s if np.isfinite(result.finish_s) else job.start_s)
    first, last = traces.column(job.start_s), traces.column(end_s - 1.0)
    times = traces.start_s + traces.step_s * np.arange(first, last + 2)
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    try:
        for i, site in enumerate(traces.sites):
            values = traces.values[i, first : last + 1]
            ax.step(
                _hours(times, job.start_s),
                [*values, values[-1]],
                where="post",
                linewidth=1.0,
                alpha=0.7,
                label=site,
            )
        for seg in result.segments:
            row = traces.index[seg.site]
            ci = traces.intensity(row, seg.start_s)
            style = "-" if seg.kind == "train" else ":"
            ax.plot(
                _hours([seg.start_s, seg.end_s], job.start_s),
                [ci, ci],
                style,
                color="black",
                linewidth=3.0,
            )
        ax.set_xlabel("hours since the job started (black: the job's path)")
        ax.set_ylabel(f"gCO2eq/kWh ({traces.basis_label})")
        ax.legend(fontsize=7, ncol=min(6, len(traces.sites)))
        ax.grid(alpha=0.3)
        ax.set_title(
            f"Intensity per site and the path of {result.policy} — {_tag(traces)}", fontsize=10
        )
        return _save(fig, path, traces.assumptions() if notes is None else notes)
    finally:
        plt.close(fig)
