"""The offline optimum: least carbon for a job, knowing every site's future intensity.

Dynamic programming over time slots (the trace's grid steps, from the job's start) × site ×
progress (units of ``slot_s / units_per_slot`` seconds of full-clock work), with:

* in each slot, at the site it is at, any amount of work the GPU can do in the slot — at any mix
  of its settings and idle time: the slot's energy is the lower convex hull of the GPU profile's
  (speed, power) points and idling (:func:`slot_energy_j`), so "GPU setting per step" is free;
* a move at the start of a slot to any other site: the move's downtime at idle power on the site
  it leaves, then the rest of the slot at the destination;
* the slot in which the work completes costs only the work (the GPU is released after it);
* the deadline: the work must complete within ``deadline_factor ×`` its full-clock time.

The same costs as the simulator (:mod:`caftm.sim.engine`) on a coarser clock. Where the two
differ the optimum is given the freer choice — mixing settings and idling within a slot, the meter
stopping when the job ends, any GPU setting (carbon only, whatever the policies' η) — and in the
simulator moves start on the grid as here (a suspend needs the dwell of 30 min after a move or a
pause, so it falls on an hour's poll). One restriction remains: progress moves in whole units per
slot (15 min of work by default), so the DP is a lower bound up to that grid; the bench checks on
every job that no simulated policy beats it (none has). Vectorised over start times: one call
solves every job of one shape.

Units: s, W, J, gCO2eq/kWh, g.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from caftm._units import J_PER_KWH
from caftm.errors import ConfigError
from caftm.sim.gpu_profile import GpuProfile

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Progress units per slot (a slot of 1 h: 15-minute units of full-clock work).
UNITS_PER_SLOT = 4


def _hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Lower convex hull of (x, y) points, x ascending."""
    hull: list[tuple[float, float]] = []
    for p in sorted(set(points)):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) <= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def slot_energy_j(
    gpu: GpuProfile, gpus: int, work_s: FloatArray, slot_s: float, *, finishing: bool
) -> FloatArray:
    """Least energy (J) to do ``work_s`` seconds of full-clock work within ``slot_s`` seconds.

    The GPU may mix its settings and idle time (``finishing``: switch off instead of idling,
    the job being done). Infeasible amounts (more than the full clock can do) give inf.
    """
    speeds = gpu.step_time_s[0] / gpu.step_time_s  # work seconds per wall second
    rest_w = 0.0 if finishing else gpu.idle_power_w
    points = [(0.0, rest_w), *zip(speeds.tolist(), gpu.power_w.tolist(), strict=True)]
    hull = _hull(points)
    xs = np.array([p[0] for p in hull])
    ys = np.array([p[1] for p in hull])
    rate = np.asarray(work_s, dtype=float) / slot_s if slot_s > 0 else np.full_like(work_s, np.inf)
    power = np.interp(rate, xs, ys)
    out: FloatArray = np.where(rate <= xs[-1] + 1e-12, power * slot_s * gpus, np.inf)
    return out


@dataclass(frozen=True)
class OptimumResult:
    """The optimum of each job: least carbon (g), and the slot count by which it finishes."""

    carbon_g: FloatArray
    finish_slots: npt.NDArray[np.int64]


def solve(
    ci: FloatArray,
    start_row: int,
    gpu: GpuProfile,
    *,
    work_s: float,
    gpus: int,
    deadline_s: float,
    slot_s: float,
    move_downtime_s: float,
    units_per_slot: int = UNITS_PER_SLOT,
    chunk_jobs: int = 64,
) -> OptimumResult:
    """Least carbon for jobs starting at slot 0 of ``ci``.

    Args:
        ci: ``(jobs, slots, sites)`` intensity per job, slot and site, gCO2eq/kWh (slot 0 is the
            job's first slot; at least ``deadline_s / slot_s`` slots).
        start_row: the site every job starts at.
        work_s: full-clock wall time of the work, s (rounded down to whole progress units).
        deadline_s: time allowed from the start, s (whole slots).
        chunk_jobs: jobs solved together (small blocks stay in the CPU cache).

    Raises:
        ConfigError: too few slots of intensity for the deadline, or no way to finish in time.
    """
    ci = np.asarray(ci, dtype=float)
    parts = [
        _solve_block(
            ci[i : i + chunk_jobs],
            start_row,
            gpu,
            work_s=work_s,
            gpus=gpus,
            deadline_s=deadline_s,
            slot_s=slot_s,
            move_downtime_s=move_downtime_s,
            units_per_slot=units_per_slot,
        )
        for i in range(0, max(1, ci.shape[0]), chunk_jobs)
    ]
    return OptimumResult(
        np.concatenate([p.carbon_g for p in parts]),
        np.concatenate([p.finish_slots for p in parts]),
    )


def _solve_block(
    ci: FloatArray,
    start_row: int,
    gpu: GpuProfile,
    *,
    work_s: float,
    gpus: int,
    deadline_s: float,
    slot_s: float,
    move_downtime_s: float,
    units_per_slot: int = UNITS_PER_SLOT,
) -> OptimumResult:
    """:func:`solve` for one block of jobs (same arguments)."""
    ci = np.asarray(ci, dtype=float)
    n_jobs, n_slots, n_sites = ci.shape
    slots = math.floor(deadline_s / slot_s + 1e-9)
    if slots > n_slots:
        raise ConfigError(f"optimum needs {slots} slots of intensity, got {n_slots}")
    unit_s = slot_s / units_per_slot
    total = math.floor(work_s / unit_s + 1e-9)
    if total > slots * units_per_slot:
        raise ConfigError("the job cannot finish before its deadline even at full clock")
    k_full = np.arange(units_per_slot + 1, dtype=np.float64)
    moved_slot_s = max(0.0, slot_s - move_downtime_s)
    k_moved = int(min(units_per_slot, math.floor(moved_slot_s / unit_s + 1e-9)))
    to_g = 1.0 / J_PER_KWH
    e_run, e_end, e_run_m, e_end_m = (
        (slot_energy_j(gpu, gpus, k_full * unit_s, span, finishing=end) * to_g).astype(np.float32)
        for span, end in (
            (slot_s, False),
            (slot_s, True),
            (moved_slot_s, False),
            (moved_slot_s, True),
        )
    )
    move_g = np.float32(gpu.idle_power_w * gpus * move_downtime_s * to_g)
    inf = np.inf
    ci = ci.astype(np.float32)  # float32 halves the memory traffic; ~1e-7 relative rounding
    value = np.full((n_jobs, n_sites, total), inf, dtype=np.float32)
    value[:, start_row, 0] = 0.0
    done = np.full(n_jobs, inf, dtype=np.float32)
    finish_slot = np.full(n_jobs, -1, dtype=np.int64)
    for h in range(slots):
        c = ci[:, h, :][:, :, None]  # (jobs, sites, 1)
        # arriving anywhere after a move: the best site to come from (moving to the site one is
        # at is never better than staying, which may idle for the downtime, so it is not excluded)
        arrive = (value + c * move_g).min(axis=1, keepdims=True)  # (jobs, 1, progress)
        new = np.full_like(value, inf)
        finished = np.full(n_jobs, inf, dtype=np.float32)
        lo = max(0, total - (slots - h) * units_per_slot)  # progress still able to finish
        hi = min(total, h * units_per_slot + 1)  # progress reachable by now
        for source, run, end, k_max in (
            (value, e_run, e_end, units_per_slot),
            (arrive, e_run_m, e_end_m, k_moved),
        ):
            if hi <= lo:
                break
            base = source[:, :, lo:hi]
            here = source[:, :, :]
            for k in range(k_max + 1):
                if not math.isfinite(run[k]):
                    continue
                first, last = lo + k, hi + k  # target progress range
                keep = min(last, total) - first
                if keep > 0:
                    np.minimum(
                        new[:, :, first : first + keep],
                        base[:, :, :keep] + c * run[k],
                        out=new[:, :, first : first + keep],
                    )
                p = total - k  # exactly finishing from progress p
                if lo <= p < hi and math.isfinite(end[k]):
                    cand = (here[:, :, p] + c[:, :, 0] * end[k]).min(axis=1)
                    np.minimum(finished, cand, out=finished)
        better = finished < done
        finish_slot = np.where(better, h + 1, finish_slot)
        done = np.minimum(done, finished)
        value = new
    return OptimumResult(done.astype(np.float64), finish_slot)


def brute_force(
    ci: FloatArray,
    start_row: int,
    gpu: GpuProfile,
    *,
    work_s: float,
    gpus: int,
    deadline_s: float,
    slot_s: float,
    move_downtime_s: float,
    units_per_slot: int = UNITS_PER_SLOT,
) -> float:
    """The same optimum by enumerating every sequence of (site, work) choices — for tests only
    (exponential: a handful of slots and sites). ``ci``: ``(slots, sites)``."""
    ci = np.asarray(ci, dtype=float)
    slots = math.floor(deadline_s / slot_s + 1e-9)
    unit_s = slot_s / units_per_slot
    total = math.floor(work_s / unit_s + 1e-9)
    moved_slot_s = max(0.0, slot_s - move_downtime_s)
    to_g = 1.0 / J_PER_KWH

    def energy_g(units: int, span_s: float, finishing: bool) -> float:
        e = slot_energy_j(gpu, gpus, np.array([units * unit_s]), span_s, finishing=finishing)
        return float(e[0]) * to_g

    move_g = gpu.idle_power_w * gpus * move_downtime_s * to_g
    best = math.inf

    def walk(h: int, site: int, progress: int, carbon: float) -> None:
        nonlocal best
        if h == slots:
            return
        for dest in range(ci.shape[1]):
            moved = dest != site
            span = moved_slot_s if moved else slot_s
            cost = ci[h, site] * move_g if moved else 0.0
            for units in range(total - progress + 1):
                end = progress + units == total
                e = energy_g(units, span, end)
                if not math.isfinite(e):
                    continue
                spent = carbon + cost + ci[h, dest] * e
                if end:
                    best = min(best, spent)
                else:
                    walk(h + 1, dest, progress + units, spent)

    walk(0, start_row, 0, 0.0)
    return best
