"""The one planning solver: least carbon to finish a job by its deadline (time × site × progress).

Shared by the planning policy (:class:`caftm.control.planner.Planner`, over a forecast, re-solved
as the job goes) and the offline optimum (:mod:`caftm.sim.optimum`, over the true future from the
job's start). It uses only numbers: an intensity per slot and site, the GPU's (speed, power) points
and idle power, a move's downtime, and the slots up to the deadline.

The problem, exact on its grid:

* time is cut into slots (the first may start part-way through an hour, the last may end at the
  deadline part-way through one); progress into units of ``unit_s`` seconds of full-clock work;
* in each slot, at the site it is at, the job does any whole number of units the GPU can do in the
  slot, at the least energy any mix of its settings and idle time gives: the lower convex hull of
  the (speed, power) points and (0, idle) (:func:`slot_energy_j`) — inside the deadline time costs
  nothing, so running slower in the slack is free to choose;
* a move at the start of a slot to another site: the move's downtime at idle power on the site it
  leaves (at that site's intensity), then the rest of the slot at the destination;
* the slot in which the work completes costs only the work (the GPU is released after it);
* the deadline is hard: what cannot finish by the last slot is infeasible.

Solved backwards (value of every site and remaining progress at every slot start), vectorised over
jobs, sites and progress; a plan is read forwards from the start state.
:meth:`PlanningProblem.path_carbon` then lifts the grid's whole units along a plan's path
(continuous work per slot, exact): the offline optimum reports that, since a policy can do
fractional amounts. Every cost is linear in the intensities, so scaling them all by one positive
factor scales every option's cost alike and changes no choice (a basis change leaves the plan as
it is).

Units: s, W, J, gCO2eq/kWh, g.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from caftm._units import J_PER_KWH
from caftm.errors import ConfigError

FloatArray = npt.NDArray[np.float64]


def lower_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
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


@dataclass(frozen=True)
class GpuCurve:
    """The GPU as the planner sees it: per setting, speed and power; and idle power.

    Attributes:
        settings: the settings (MHz or W), the first the device default (full speed).
        speed: work done per wall second at each setting, relative to the first (≤ 1 mostly).
        power_w: training power at each setting, W (for the whole job: all its devices).
        idle_power_w: power while holding the job without training, W (the whole job).
    """

    settings: tuple[float, ...]
    speed: tuple[float, ...]
    power_w: tuple[float, ...]
    idle_power_w: float
    _hulls: dict[bool, tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        n = len(self.settings)
        if n == 0 or len(self.speed) != n or len(self.power_w) != n:
            raise ConfigError("GPU curve: settings, speeds and powers disagree")
        if not all(s > 0 for s in self.speed) or not all(math.isfinite(p) for p in self.power_w):
            raise ConfigError("GPU curve: non-positive speed or non-finite power")

    @classmethod
    def flat(cls, power_w: float, idle_power_w: float) -> GpuCurve:
        """One setting only (the device default): when nothing is known of the GPU's curve."""
        return cls((0.0,), (1.0,), (float(power_w),), float(idle_power_w))

    def hull(self, *, finishing: bool) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
        """The hull's vertices: speeds, powers (W), and the setting row of each (−1: rest)."""
        found = self._hulls.get(finishing)
        if found is None:
            found = self._hull(finishing)
            self._hulls[finishing] = found
        return found

    def _hull(self, finishing: bool) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
        rest_w = 0.0 if finishing else self.idle_power_w
        points = [(0.0, rest_w), *zip(self.speed, self.power_w, strict=True)]
        hull = lower_hull(points)
        xs = np.array([p[0] for p in hull])
        ys = np.array([p[1] for p in hull])
        rows = []
        for x, y in hull:
            if x == 0.0 and y == rest_w:
                rows.append(-1)
            else:
                rows.append(
                    next(
                        i
                        for i, (s, p) in enumerate(zip(self.speed, self.power_w, strict=True))
                        if s == x and p == y
                    )
                )
        return xs, ys, np.array(rows, dtype=np.int64)

    def phases(self, rate: float, *, finishing: bool) -> tuple[tuple[int | None, float], ...]:
        """How to do ``rate`` (work s per wall s) at the hull's least energy: (setting row, share
        of the slot) for each phase, the faster first; a row of None is rest (waiting). Two
        neighbouring hull vertices mix (no rest unless the rate is below the slowest efficient
        setting); a finishing slot runs its one setting until the work is done."""
        if rate <= 1e-12:
            return ((None, 1.0),)
        xs, _, rows = self.hull(finishing=finishing)
        top = int(np.searchsorted(xs, rate - 1e-9))  # first vertex at least as fast
        top = min(top, xs.size - 1)
        fast = int(rows[top]) if rows[top] >= 0 else int(np.argmax(self.speed))
        if finishing or top == 0 or xs[top] <= rate + 1e-9:
            return ((fast, 1.0),)
        low = float(xs[top - 1])
        share = (rate - low) / (float(xs[top]) - low)
        slow = None if rows[top - 1] < 0 else int(rows[top - 1])
        return ((fast, share), (slow, 1.0 - share))


def slot_energy_j(
    curve: GpuCurve, work_s: FloatArray, span_s: float, *, finishing: bool
) -> FloatArray:
    """Least energy (J) to do ``work_s`` seconds of full-clock work within ``span_s`` seconds.

    The GPU may mix its settings and idle time (``finishing``: switch off instead of idling,
    the job being done). Infeasible amounts (more than the fastest setting can do) give inf.
    """
    xs, ys, _ = curve.hull(finishing=finishing)
    work = np.asarray(work_s, dtype=float)
    if span_s <= 0:
        return np.where(work <= 0, 0.0, np.inf)
    rate = work / span_s
    power = np.interp(rate, xs, ys)
    out: FloatArray = np.where(rate <= xs[-1] + 1e-12, power * span_s, np.inf)
    return out


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One slot of a plan (times from the plan's start, s; carbon as the intensities given, g).

    ``units`` of progress at ``site`` (0: wait there); ``moved``: the slot starts with a move to it;
    ``setting_row``: the GPU setting that does it (None: waiting, nothing to run); ``phases``:
    the settings that do it exactly (row or None for rest, share of the slot after any move).
    """

    slot: int
    start_s: float
    span_s: float
    site: int
    moved: bool
    units: int
    setting_row: int | None
    carbon_g: float
    phases: tuple[tuple[int | None, float], ...] = ()


@dataclass(frozen=True)
class PlanResult:
    """Least carbon of each job (g; inf: cannot finish), and each job's plan when asked for."""

    carbon_g: FloatArray
    plans: tuple[tuple[PlanStep, ...], ...] = ()

    def finish_slot(self, job: int = 0) -> int:
        """The number of slots the job's plan uses (−1: no plan)."""
        if job >= len(self.plans) or not self.plans[job]:
            return -1
        return self.plans[job][-1].slot + 1


@dataclass(frozen=True)
class _Tables:
    """Per-slot energy (kWh per unit intensity, so carbon = CI × table) for 0..k_max units."""

    run: FloatArray
    end: FloatArray
    run_moved: FloatArray
    end_moved: FloatArray
    #: ``run`` and ``run_moved`` stacked; ``end`` and ``end_moved`` stacked
    runs: FloatArray = field(init=False, repr=False)
    ends: FloatArray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", np.stack([self.run, self.run_moved]))
        object.__setattr__(self, "ends", np.stack([self.end, self.end_moved]))


class PlanningProblem:
    """Slots, units and the GPU of one planning problem (the intensities come with :meth:`solve`).

    Args:
        curve: the GPU (powers for the whole job).
        spans_s: length of each slot, s (the first may be partial; their sum reaches the deadline).
        unit_s: progress unit, s of full-clock work.
        move_downtime_s: checkpoint + transfer + restart of one move, s (at idle power).

    Raises:
        ConfigError: no slots, or a non-positive unit.
    """

    def __init__(
        self, curve: GpuCurve, spans_s: list[float], *, unit_s: float, move_downtime_s: float
    ) -> None:
        if not spans_s or not unit_s > 0:
            raise ConfigError("a plan needs at least one slot and a positive progress unit")
        self.curve = curve
        self.spans_s = [max(0.0, float(s)) for s in spans_s]
        self.unit_s = float(unit_s)
        self.move_downtime_s = float(move_downtime_s)
        self.move_kwh = curve.idle_power_w * move_downtime_s / J_PER_KWH
        self._tables: dict[float, _Tables] = {}
        self._stacked_memo: (
            tuple[tuple[float, ...], tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]] | None
        ) = None
        self.max_speed = max(curve.speed)

    def tables(self, span_s: float) -> _Tables:
        """Energy tables of a slot of ``span_s`` (memoised per span)."""
        found = self._tables.get(span_s)
        if found is None:
            moved_s = max(0.0, span_s - self.move_downtime_s)
            k_max = max(0, math.floor(span_s * self.max_speed / self.unit_s + 1e-9))
            k = np.arange(k_max + 1, dtype=float) * self.unit_s

            def kwh(span: float, end: bool) -> FloatArray:
                out: FloatArray = slot_energy_j(self.curve, k, span, finishing=end) / J_PER_KWH
                return out

            found = _Tables(
                kwh(span_s, False), kwh(span_s, True), kwh(moved_s, False), kwh(moved_s, True)
            )
            if len(self._tables) > 64:  # partial first slots vary: keep the memo small
                self._tables.clear()
            self._tables[span_s] = found
        return found

    def capacity_units(self) -> int:
        """Most units the slots can hold at the fastest setting, no move."""
        return sum(self.tables(s).run.size - 1 for s in self.spans_s)

    # -- solving -----------------------------------------------------------------------------------
    def values(
        self,
        ci: FloatArray,
        work_units: int,
        *,
        dtype: npt.DTypeLike = np.float64,
        keep: bool = True,
    ) -> list[FloatArray]:
        """Backward values: ``V[h][job, site, r]`` = least carbon (g) to finish ``r`` units from
        the start of slot ``h`` at ``site`` (before deciding on a move). ``ci``: (jobs, slots,
        sites). ``keep`` False: only slot 0's values (less memory when no plan is read)."""
        n_jobs, n_slots, n_sites = ci.shape
        if n_slots < len(self.spans_s):
            raise ConfigError(f"a plan over {len(self.spans_s)} slots got {n_slots} of intensity")
        r_max = work_units
        inf = np.inf
        n = len(self.spans_s)
        runs, ends, caps = self._stacked()
        before = np.concatenate([[0], np.cumsum(caps)])  # units doable before slot h
        after = before[-1] - before  # units doable from slot h on (no move)
        # every slot's costs at once: (slots, rows, jobs, sites, k), inf where the energy is
        c_all = np.ascontiguousarray(np.moveaxis(ci[:, :n, :], 1, 0)).astype(dtype)
        cr_all = _times_all(c_all, runs, dtype)
        ce_all = _times_all(c_all, ends, dtype)
        move_kwh = np.asarray(self.move_kwh, dtype=dtype)
        # during the solve, index 0 (nothing left) is inf: reaching it is a finishing slot,
        # costed by ``end``; it is set to 0 in what is returned
        nxt: FloatArray = np.full((n_jobs, n_sites, r_max + 1), inf, dtype=dtype)
        out = [nxt]
        for h in range(n - 1, -1, -1):
            # only what is left of the work reachable from the start and able to finish matters
            lo = max(1, r_max - int(before[h]))
            hi = min(r_max, int(after[h]))
            value: FloatArray = np.full((n_jobs, n_sites, r_max + 1), inf, dtype=dtype)
            if lo <= hi:
                c = c_all[h][:, :, None]  # (jobs, sites, 1)
                both = _best_in_slot(nxt, cr_all[h], ce_all[h], int(caps[h]), lo, hi)
                arrive = both[1].min(axis=1, keepdims=True)  # the best site to move to
                value[:, :, lo : hi + 1] = np.minimum(both[0], arrive + c * move_kwh)
            if keep:
                out.append(value)
            nxt = value
        kept = out if keep else [nxt]
        for v in kept:
            v[:, :, 0] = 0.0
        kept.reverse()
        return kept

    def _stacked(self) -> tuple[FloatArray, FloatArray, npt.NDArray[np.int64]]:
        """Every slot's energy tables padded to one width with inf: runs and ends
        ``(slots, 2, k)`` (row 1: after a move) and each slot's most units without a move."""
        key = tuple(self.spans_s)
        if self._stacked_memo is not None and self._stacked_memo[0] == key:
            return self._stacked_memo[1]
        tables = [self.tables(span) for span in self.spans_s]
        caps = np.array([t.run.size - 1 for t in tables], dtype=np.int64)
        width = int(max(t.runs.shape[1] for t in tables))
        runs = np.full((len(tables), 2, width), np.inf)
        ends = np.full((len(tables), 2, width), np.inf)
        for h, t in enumerate(tables):
            runs[h, :, : t.runs.shape[1]] = t.runs
            ends[h, :, : t.ends.shape[1]] = t.ends
        self._stacked_memo = (key, (runs, ends, caps))
        return runs, ends, caps

    def solve(
        self,
        ci: FloatArray,
        start_row: int,
        work_units: int,
        *,
        plans: bool = False,
        dtype: npt.DTypeLike = np.float64,
        max_steps: int | None = None,
    ) -> PlanResult:
        """Least carbon (and, with ``plans``, each job's plan) starting at ``start_row`` at the
        start of slot 0 with ``work_units`` to do. ``ci``: (jobs, slots, sites), gCO2eq/kWh."""
        ci = np.asarray(ci, dtype=float)
        if work_units <= 0:
            zero = np.zeros(ci.shape[0])
            return PlanResult(zero, tuple(() for _ in range(ci.shape[0])) if plans else ())
        values = self.values(ci, work_units, dtype=dtype, keep=plans)
        carbon = values[0][:, start_row, work_units].astype(np.float64)
        if not plans:
            return PlanResult(carbon)
        found = tuple(
            self._read_plan(ci[j], [v[j] for v in values], start_row, work_units, max_steps)
            if math.isfinite(carbon[j])
            else ()
            for j in range(ci.shape[0])
        )
        return PlanResult(carbon, found)

    def path_carbon(
        self, ci: FloatArray, plan: tuple[PlanStep, ...], start_row: int, work_units: int
    ) -> float:
        """Least carbon (g) along ``plan``'s sites, moves and finishing slot with the work per
        slot **continuous** (any amount up to the slot's capacity, not whole units).

        The grid's one restriction, whole units per slot, can cost up to the within-slot
        convexity of the hull (~0.6 % of a slot at 5-min units); a policy that carries out the
        same path with fractional amounts (re-plans from fractional progress, a steady clock) gets
        that back. Along a fixed path the problem is separable convex piecewise-linear with one
        linear constraint (total work), solved exactly by taking the hull segments of every slot
        cheapest first. The plan's own whole units are one feasible point, so the result is never
        above the plan's carbon. ``ci``: (slots, sites) of this job.
        """
        if not plan:
            return math.inf
        total = work_units * self.unit_s
        base = 0.0
        slopes: list[FloatArray] = []
        lengths: list[FloatArray] = []
        site = start_row
        last = len(plan) - 1
        for i, step in enumerate(plan):
            if step.moved:
                base += float(ci[step.slot, site]) * self.move_kwh
            site = step.site
            c = float(ci[step.slot, site])
            span = max(0.0, step.span_s - self.move_downtime_s) if step.moved else step.span_s
            xs, ys, _ = self.curve.hull(finishing=i == last)
            base += c * span * float(ys[0]) / J_PER_KWH
            if span > 0 and xs.size > 1:
                dx = np.diff(xs)
                slopes.append(c * np.diff(ys) / dx / J_PER_KWH)  # g per work-s
                lengths.append(span * dx)
        slope = np.concatenate(slopes)
        length = np.concatenate(lengths)
        order = np.argsort(slope, kind="stable")
        taken = np.clip(total - (np.cumsum(length[order]) - length[order]), 0.0, length[order])
        if float(length.sum()) < total * (1 - 1e-12):
            return math.inf
        return base + float(np.dot(slope[order], taken))

    def _read_plan(
        self,
        ci: FloatArray,
        values: list[FloatArray],
        site: int,
        left: int,
        max_steps: int | None = None,
    ) -> tuple[PlanStep, ...]:
        """Follow the least-cost choices forwards (ties: stay before moving, more work first)."""
        steps: list[PlanStep] = []
        start_s = 0.0
        n_sites = ci.shape[1]
        for h, span in enumerate(self.spans_s):
            if left <= 0 or (max_steps is not None and len(steps) >= max_steps):
                break
            t = self.tables(span)
            target = float(values[h][site, left])
            tol = 1e-6 * abs(target) + 1e-9
            chosen: tuple[float, int, bool, int, float] | None = None
            fallback: tuple[float, int, bool, int, float] | None = None
            for dest in [site, *[d for d in range(n_sites) if d != site]]:
                moved = dest != site
                run, end = (t.run_moved, t.end_moved) if moved else (t.run, t.end)
                extra = ci[h, site] * self.move_kwh if moved else 0.0
                for k in range(min(run.size - 1, left), -1, -1):
                    carbon = ci[h, dest] * (end[k] if k == left else run[k])
                    after = 0.0 if k == left else float(values[h + 1][dest, left - k])
                    cost = extra + carbon + after
                    if not math.isfinite(cost):
                        continue
                    option = (cost, dest, moved, k, extra + carbon)
                    if cost <= target + tol:
                        chosen = option
                        break
                    if fallback is None or cost < fallback[0]:
                        fallback = option
                if chosen is not None:
                    break
            best = chosen or fallback
            if best is None:  # cannot happen on a feasible value
                break
            _, dest, moved, k, carbon_g = best
            span_run = max(0.0, span - self.move_downtime_s) if moved else span
            rate = k * self.unit_s / span_run if span_run > 0 else 0.0
            phases = self.curve.phases(rate, finishing=k == left)
            steps.append(
                PlanStep(h, start_s, span, dest, moved, k, phases[0][0], float(carbon_g), phases)
            )
            site, left = dest, left - k
            start_s += span
        return tuple(steps)


def _times_all(c: FloatArray, energy: FloatArray, dtype: npt.DTypeLike) -> FloatArray:
    """``c × energy`` of every slot: c ``(slots, jobs, sites)``, energy ``(slots, rows, k)`` →
    ``(slots, rows, jobs, sites, k)``, inf where the energy is (even at c = 0)."""
    finite = np.isfinite(energy)[:, :, None, None, :]
    product = c[:, None, :, :, None] * np.where(np.isfinite(energy), energy, 0.0)[
        :, :, None, None, :
    ].astype(dtype)
    out: FloatArray = np.where(finite, product, np.inf).astype(dtype)
    return out


def _best_in_slot(
    future: FloatArray, cr: FloatArray, ce: FloatArray, k_cap: int, lo: int, hi: int
) -> FloatArray:
    """Least cost to have ``r`` (``1 ≤ lo ≤ r ≤ hi``) left at the slot's start and do ``k`` units
    in it here, for each row of ``cr``/``ce`` (a slot without and with a move):
    ``(rows, jobs, sites, hi − lo + 1)``. ``future[..., r − k]``: from the next slot on (inf at
    0); ``ce[..., r]``: the work ends in this slot (``k = r``); ``k_cap``: most units here."""
    width = hi - lo + 1
    k_max = min(k_cap, hi)
    best = np.full((cr.shape[0], *future.shape[:-1], width), np.inf, dtype=future.dtype)
    for k in range(k_max + 1):
        first = max(lo, k)  # r from first to hi draws on future[r - k]
        if first > hi:
            continue
        np.minimum(
            best[..., first - lo :],
            future[None, ..., first - k : hi + 1 - k] + cr[..., k : k + 1],
            out=best[..., first - lo :],
        )
    first, last = lo, min(k_max, hi)
    if first <= last:
        np.minimum(
            best[..., first - lo : last - lo + 1],
            ce[..., first : last + 1],
            out=best[..., first - lo : last - lo + 1],
        )
    return best
