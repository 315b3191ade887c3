"""The offline optimum: least carbon for a job, knowing every site's future intensity.

The planning solver of :mod:`caftm.control.planning` (the same one the ``planner`` policy runs
over its forecasts) given the true future and the whole horizon from the job's start: time slots
(the trace's grid steps) × site × progress (units of ``slot_s / units_per_slot`` seconds of
full-clock work), the GPU's lower convex hull of settings and idle per slot, moves at slot starts
with their downtime at idle power, the deadline hard (``deadline_factor ×`` the full-clock time).

The same costs as the simulator (:mod:`caftm.sim.engine`) on a coarser clock. Where the two
differ the optimum is given the freer choice — mixing settings and idling within a slot, the meter
stopping when the job ends, any GPU setting — and in the simulator moves start on the grid as
here. The DP moves progress in whole units per slot (5 min of work by default); a policy does
any amount (a steady slower clock, re-plans from fractional progress), and beat it by up to
4e-5 in the bench. So the optimum reported is the DP's path (sites, moves, finishing slot) with
the work per slot made continuous, solved exactly
(:meth:`~caftm.control.planning.PlanningProblem.path_carbon`): never above the DP, reachable.
What remains a grid is the path itself: another path with fractional work could in principle
come lower by less than the whole-unit gap (~0.2 % of a job at most seen); the bench checks on
every job that no simulated policy beats it. Vectorised over start times: one call solves every
job of one shape. :func:`brute_force` enumerates the whole-unit problem independently, for
tests (``continuous=False`` is what it counts).

Units: s, W, J, gCO2eq/kWh, g.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from caftm._units import J_PER_KWH
from caftm.control.planning import PlanningProblem, PlanStep
from caftm.control.planning import slot_energy_j as planning_slot_energy_j
from caftm.errors import ConfigError
from caftm.sim.gpu_profile import GpuProfile

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

#: Progress units per slot (a slot of 1 h: 5-minute units of full-clock work; 4 let a steady
#: slower clock beat the optimum at a 1.1 deadline).
UNITS_PER_SLOT = 12


def slot_energy_j(
    gpu: GpuProfile, gpus: int, work_s: FloatArray, slot_s: float, *, finishing: bool
) -> FloatArray:
    """Least energy (J) to do ``work_s`` seconds of full-clock work within ``slot_s`` seconds
    (the planning solver's :func:`~caftm.control.planning.slot_energy_j` for this GPU profile)."""
    return planning_slot_energy_j(gpu.curve(gpus), work_s, slot_s, finishing=finishing)


@dataclass(frozen=True)
class OptimumResult:
    """The optimum of each job: least carbon (g), and the slot count by which it finishes (−1
    where no plan was read: ``plans=False``)."""

    carbon_g: FloatArray
    finish_slots: npt.NDArray[np.int64]
    plans: tuple[tuple[PlanStep, ...], ...] = ()


def problem(
    gpu: GpuProfile,
    *,
    gpus: int,
    deadline_s: float,
    slot_s: float,
    move_downtime_s: float,
    units_per_slot: int = UNITS_PER_SLOT,
) -> PlanningProblem:
    """The planning problem of a job starting on the grid: whole slots up to the deadline, and
    the part of a slot before it (as the planner sees a deadline part-way through an hour)."""
    return PlanningProblem(
        gpu.curve(gpus),
        spans_to(deadline_s, slot_s),
        unit_s=slot_s / units_per_slot,
        move_downtime_s=move_downtime_s,
    )


def spans_to(deadline_s: float, slot_s: float) -> list[float]:
    """Slot lengths from a start on the grid to ``deadline_s`` later (the last may be partial)."""
    whole = math.floor(deadline_s / slot_s + 1e-9)
    rest = deadline_s - whole * slot_s
    spans = [slot_s] * whole + ([rest] if rest > 1e-6 else [])
    return spans or [0.0]


def slots_needed(deadline_s: float, slot_s: float) -> int:
    """Slots of intensity a job with ``deadline_s`` needs (its last may be partial)."""
    return len(spans_to(deadline_s, slot_s))


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
    plans: bool = False,
    continuous: bool = True,
) -> OptimumResult:
    """Least carbon for jobs starting at slot 0 of ``ci``: the planning solver given the true
    future over the whole horizon.

    Args:
        ci: ``(jobs, slots, sites)`` intensity per job, slot and site, gCO2eq/kWh (slot 0 is the
            job's first slot; at least :func:`slots_needed` slots).
        start_row: the site every job starts at.
        work_s: full-clock wall time of the work, s (rounded down to whole progress units).
        deadline_s: time allowed from the start, s (a partial last slot counts).
        chunk_jobs: jobs solved together (small blocks stay in the CPU cache).
        plans: also read every job's plan (and its finishing slot).
        continuous: the carbon of each job's plan path with continuous work per slot
            (:meth:`~caftm.control.planning.PlanningProblem.path_carbon`: never above the
            whole-unit value, and what a policy carrying out the same path with fractional
            amounts can reach); False: the whole-unit DP's value (as the brute force counts).

    Raises:
        ConfigError: too few slots of intensity for the deadline, or no way to finish in time.
    """
    ci = np.asarray(ci, dtype=float)
    slots = slots_needed(deadline_s, slot_s)
    if slots > ci.shape[1]:
        raise ConfigError(f"optimum needs {slots} slots of intensity, got {ci.shape[1]}")
    unit_s = slot_s / units_per_slot
    total = math.floor(work_s / unit_s + 1e-9)
    solver = problem(
        gpu,
        gpus=gpus,
        deadline_s=deadline_s,
        slot_s=slot_s,
        move_downtime_s=move_downtime_s,
        units_per_slot=units_per_slot,
    )
    if total > solver.capacity_units():
        raise ConfigError("the job cannot finish before its deadline even at full clock")
    # float32 halves the memory traffic of many jobs (~1e-7 relative rounding); plans asked for
    # read float64; the continuous carbon is recomputed in float64 along the plan read (float32
    # only steers which path is read, and the whole-unit value stays its upper bound)
    read = plans or continuous
    dtype = np.float64 if plans else np.float32
    parts = [
        solver.solve(ci[i : i + chunk_jobs], start_row, total, plans=read, dtype=dtype)
        for i in range(0, max(1, ci.shape[0]), chunk_jobs)
    ]
    carbon = np.concatenate([p.carbon_g for p in parts])
    found = tuple(plan for p in parts for plan in p.plans)
    if continuous:
        refined = [
            solver.path_carbon(ci[j], plan, start_row, total) if plan else math.inf
            for j, plan in enumerate(found)
        ]
        carbon = np.array(refined)
    if not plans:
        found = ()
    finish = np.array(
        [plan[-1].slot + 1 if plan else -1 for plan in found] if plans else [-1] * carbon.size,
        dtype=np.int64,
    )
    return OptimumResult(carbon, finish, found)


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
    spans = spans_to(deadline_s, slot_s)
    slots = len(spans)
    unit_s = slot_s / units_per_slot
    total = math.floor(work_s / unit_s + 1e-9)
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
            span = max(0.0, spans[h] - move_downtime_s) if moved else spans[h]
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
