"""The page's series: thinned to what a browser draws, with a gap wherever nothing ran.

A job's windows are one series across its legs; between two legs (a move, a pause, a restart)
and wherever the job's clock jumps past a window's length, nothing was measured. The page must
not draw a line across such a gap (477 → 36 g/kWh across a move is no measurement), so the
series sent carry a ``null`` point there, and uPlot (``spanGaps`` false) breaks its line on it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["gapped_index", "thin"]

Index = np.ndarray[Any, np.dtype[np.int64]]


def thin(n: int, max_points: int) -> Index:
    """Indices of at most ``max_points`` of ``n`` samples, evenly spread, first and last kept."""
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


def gapped_index(n: int, gaps: Sequence[bool], max_points: int) -> list[int | None]:
    """The windows to send, in order, with None where a gap lies between two neighbours.

    Every window beside a gap is kept (a gap's edges are where the lines stop), the rest are
    thinned to about ``max_points``.
    """
    if n == 0:
        return []
    flags = np.asarray(gaps[:n], dtype=bool)
    after_gap = np.flatnonzero(flags)
    keep = np.union1d(thin(n, max_points), np.concatenate([after_gap, after_gap - 1]))
    gaps_so_far = np.cumsum(flags)
    out: list[int | None] = [int(keep[0])]
    for a, b in itertools.pairwise(keep):
        if gaps_so_far[b] != gaps_so_far[a]:
            out.append(None)
        out.append(int(b))
    return out
