"""Reading the demo figure back: which legs its lines join, where its bands and marks lie."""

from __future__ import annotations

from typing import Any

import matplotlib.dates as mdates
import numpy as np

from caftm.ledger import JobBook
from caftm.ledger.feed import Feed, Scope


def leg_of_time(book: JobBook, name: str) -> dict[float, int]:
    """Each window end of job ``name`` (a matplotlib date number) → its leg, from the ledger."""
    feed = Feed(book.ledger)
    scope = Scope.of_job(name)
    legs = {span.run_id: span.leg for span in feed.run_spans(scope)}
    return {
        round(float(mdates.date2num(w.time)), 9): int(legs[w.run_id] or 0)
        for w in feed.windows(scope)
    }


def leg_at(legs: dict[float, int], x: float) -> int:
    """The leg of the window ending nearest ``x`` (within a millisecond: keys are rounded)."""
    times = np.fromiter(legs, dtype=float)
    nearest = float(times[np.argmin(np.abs(times - x))])
    assert abs(nearest - x) < 1e-8, f"no window ends at {x!r}"
    return legs[nearest]


def joins_across_legs(line: Any, legs: dict[float, int]) -> list[tuple[float, float]]:
    """The segments ``line`` draws between points of two different legs (should be none)."""
    xs = np.asarray(line.get_xdata(), dtype=float)
    ys = np.asarray(line.get_ydata(), dtype=float)
    drawn = np.isfinite(xs) & np.isfinite(ys)
    joins = []
    for i in range(len(xs) - 1):
        if drawn[i] and drawn[i + 1]:
            a, b = leg_at(legs, xs[i]), leg_at(legs, xs[i + 1])
            if a != b:
                joins.append((xs[i], xs[i + 1]))
    return joins


def finite_points(line: Any) -> int:
    """How many points ``line`` draws."""
    xs = np.asarray(line.get_xdata(), dtype=float)
    ys = np.asarray(line.get_ydata(), dtype=float)
    return int(np.sum(np.isfinite(xs) & np.isfinite(ys)))


def spans_x(ax: Any) -> list[tuple[float, float]]:
    """The x extent of every band (``axvspan``) on ``ax``, in date numbers, rounded."""
    out = []
    for patch in ax.patches:
        verts = patch.get_patch_transform().transform(patch.get_path().vertices)
        out.append((round(float(verts[:, 0].min()), 6), round(float(verts[:, 0].max()), 6)))
    return out


def data_lines(ax: Any) -> list[Any]:
    """The lines on ``ax`` that carry data (legend proxies and reference lines left out)."""
    return [
        line for line in ax.get_lines()
        if len(line.get_xdata()) > 2 and not str(line.get_label()).startswith("_")
    ]  # fmt: skip
