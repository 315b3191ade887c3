"""Run many jobs through many policies and the optimum, and summarise what each captures.

A :class:`Scenario` is a set of sites (site → zone) and the start site. :func:`evaluate` replays
every (scenario, job length, start time, policy) through :func:`~caftm.sim.engine.simulate_job`,
solves the offline optimum for every job at once (:func:`~caftm.sim.optimum.solve`), and returns
an :class:`Evaluation` whose :meth:`~Evaluation.summary` gives, per policy and scenario:

* ``captured_pct`` — median over jobs of the share of the optimum's carbon saving over
  carbon-agnostic that the policy achieves: ``(C_agnostic − C) / (C_agnostic − C_optimum)``, %,
  counted only on jobs where the optimum saves at least :data:`ELIGIBLE_SAVING` of
  carbon-agnostic's carbon (a share of a saving of nothing means nothing); ``left_out_jobs``
  says how many were left out;
* ``saving_pct`` — median carbon saved against carbon-agnostic, %;
* ``jct_increase_pct`` — median completion-time increase against carbon-agnostic, %;
* ``migrations_per_day`` — moves per day of job (total moves / total completion days);
* ``beats_optimum`` — jobs on which the policy emitted less than the optimum (must be 0);
* ``deadline_miss_pct`` — jobs finishing after their deadline (or not at all), %;
* ``worse_than_agnostic_pct`` — jobs emitting more than :data:`WORSE_MARGIN` above
  carbon-agnostic, %.

Jobs run in worker processes when ``processes > 1`` (forked: the traces are shared).
Units: s, h, g, %.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np
import numpy.typing as npt

from caftm.control.migration import HOUR_S
from caftm.control.policies import Rules
from caftm.control.states import utc_from_s
from caftm.errors import ConfigError
from caftm.sim.engine import JobResult, simulate_job
from caftm.sim.gpu_profile import GpuProfile
from caftm.sim.job import MoveModel, SimJob
from caftm.sim.optimum import slots_needed, solve
from caftm.sim.policy_specs import PolicySpec
from caftm.sim.site_traces import ForecastMode, ForecastTable, SiteTraces

log = logging.getLogger(__name__)

#: Relative slack when checking that no policy beats the optimum: float rounding only. The
#: optimum is summed in float64 over at most a few hundred slot terms (~1e-13 relative) and the
#: simulator's carbon over its segments likewise; 1e-9 leaves four orders of magnitude for that
#: and hides no real gap (the whole-unit DP's, fixed by continuous work, was 1.5e-5 to 4e-5).
OPTIMUM_RTOL = 1e-9
#: A job counts towards a captured share only where the optimum saves at least this fraction.
ELIGIBLE_SAVING = 0.02
#: A job is "worse than carbon-agnostic" above this fraction more carbon.
WORSE_MARGIN = 0.01


@dataclass(frozen=True)
class JobFigures:
    """One policy's jobs side by side with carbon-agnostic's and the optimum's (one entry per
    job; carbon in g)."""

    carbon_g: npt.NDArray[np.float64]
    agnostic_g: npt.NDArray[np.float64]
    optimum_g: npt.NDArray[np.float64]
    jct_ratio: npt.NDArray[np.float64]  # completion time over carbon-agnostic's
    missed: npt.NDArray[np.bool_]  # finished after the deadline, or not at all

    @property
    def eligible(self) -> npt.NDArray[np.bool_]:
        """Jobs where the optimum saves at least :data:`ELIGIBLE_SAVING`."""
        out: npt.NDArray[np.bool_] = (self.agnostic_g - self.optimum_g) >= (
            ELIGIBLE_SAVING * self.agnostic_g
        )
        return out

    def captured_pct(self) -> npt.NDArray[np.float64]:
        """Share of the optimum's saving captured, % (eligible jobs only)."""
        ok = self.eligible
        base, gap = self.agnostic_g[ok], self.agnostic_g[ok] - self.optimum_g[ok]
        out: npt.NDArray[np.float64] = (base - self.carbon_g[ok]) / gap * 100.0
        return out

    @property
    def left_out(self) -> int:
        """Jobs not counted in :meth:`captured_pct`."""
        return int(np.sum(~self.eligible))

    @property
    def beats_optimum(self) -> int:
        """On-time jobs emitting less than the optimum (a late job is counted as missed)."""
        below = self.carbon_g < self.optimum_g * (1.0 - OPTIMUM_RTOL)
        return int(np.sum(below & ~self.missed))

    @property
    def worse_than_agnostic(self) -> int:
        return int(np.sum(self.carbon_g > self.agnostic_g * (1.0 + WORSE_MARGIN)))


def concat(parts: Sequence[JobFigures]) -> JobFigures:
    """Several :class:`JobFigures` as one."""
    return JobFigures(
        *(
            np.concatenate([getattr(p, name) for p in parts])
            for name in ("carbon_g", "agnostic_g", "optimum_g", "jct_ratio", "missed")
        )
    )


@dataclass(frozen=True)
class Scenario:
    """A set of candidate sites and where jobs start."""

    name: str
    traces: SiteTraces
    start_site: str

    def __post_init__(self) -> None:
        if self.start_site not in self.traces.index:
            raise ConfigError(
                f"start site {self.start_site!r} is not among the sites {self.traces.sites}"
            )


@dataclass(frozen=True)
class JobShape:
    """What every job of one group shares (see :class:`~caftm.sim.job.SimJob`)."""

    gpu_hours: float
    gpus: int = 1
    checkpoint_gb: float = 2.0
    deadline_factor: float = 1.5

    def job(self, start_site: str, start_s: float) -> SimJob:
        return SimJob(
            self.gpu_hours,
            start_site,
            start_s,
            gpus=self.gpus,
            checkpoint_gb=self.checkpoint_gb,
            deadline_factor=self.deadline_factor,
        )


@dataclass
class Evaluation:
    """Every simulated job, and the optimum of each.

    Attributes:
        results: (scenario, gpu_hours, policy) → one result per start time.
        optimum_g: (scenario, gpu_hours) → least carbon per start time, g.
        starts_s: (scenario, gpu_hours) → the start times, POSIX s.
        seconds: wall time of the whole evaluation, s.
        cpu_seconds: CPU time it used, its worker processes included, s (less sensitive than
            the wall time to other work on the machine).
        cpu_seconds_by_part: CPU time (s) of each policy's jobs, of the optimum (``optimum``)
            and of the shared forecast tables (``forecasts``).
    """

    results: dict[tuple[str, float, str], list[JobResult]] = field(default_factory=dict)
    optimum_g: dict[tuple[str, float], npt.NDArray[np.float64]] = field(default_factory=dict)
    starts_s: dict[tuple[str, float], npt.NDArray[np.float64]] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    cpu_seconds_by_part: dict[str, float] = field(default_factory=dict)

    def solves(self, policy: str) -> int:
        """Plans ``policy`` solved over every job (0: not a planning policy)."""
        return sum(r.solves for key, rows in self.results.items() if key[2] == policy for r in rows)

    def arrays(
        self, scenario: str, hours: float, policy: str
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """(carbon_g, jct_s, moves) per start."""
        rows = self.results[(scenario, hours, policy)]
        return (
            np.array([r.carbon_g for r in rows]),
            np.array([r.jct_s for r in rows]),
            np.array([r.moves for r in rows], dtype=float),
        )

    def policies(self) -> list[str]:
        """Policy names, in the order they were run."""
        return list(dict.fromkeys(key[2] for key in self.results))

    def scenarios(self) -> list[str]:
        return list(dict.fromkeys(key[0] for key in self.results))

    def figures(self, policy: str, scenarios: Sequence[str] | None = None) -> JobFigures:
        """``policy``'s jobs over ``scenarios`` (default all) beside carbon-agnostic and the
        optimum (needs the optimum)."""
        names = list(scenarios or self.scenarios())
        parts = []
        for (scenario, hours), optimum in self.optimum_g.items():
            if scenario not in names:
                continue
            base_c, base_t, _ = self.arrays(scenario, hours, "carbon-agnostic")
            c, t, _ = self.arrays(scenario, hours, policy)
            rows = self.results[(scenario, hours, policy)]
            missed = np.array(
                [not r.finished or r.finish_s > r.job.deadline_s + 1e-6 for r in rows], dtype=bool
            )
            parts.append(JobFigures(c, base_c, optimum, t / base_t, missed))
        return concat(parts)

    def beaten(self, policy: str) -> list[str]:
        """One line per on-time job of ``policy`` that emitted less than the optimum (a bug):
        case, start (UTC), length, deadline factor, carbon against the optimum, relative gap."""
        out = []
        for (scenario, hours), optimum in self.optimum_g.items():
            rows = self.results[(scenario, hours, policy)]
            for r, best in zip(rows, optimum, strict=True):
                late = not r.finished or r.finish_s > r.job.deadline_s + 1e-6
                if late or not r.carbon_g < best * (1.0 - OPTIMUM_RTOL):
                    continue
                start = utc_from_s(r.job.start_s).strftime("%Y-%m-%d %H:%M UTC")
                out.append(
                    f"{policy} {scenario} {start} {hours:g} GPU-h ×{r.job.deadline_factor:g}: "
                    f"{r.carbon_g:.6g} g < optimum {best:.6g} g "
                    f"({(best - r.carbon_g) / best:.2e} below)"
                )
        return out

    def summary(self, policy: str, scenarios: Sequence[str] | None = None) -> dict[str, float]:
        """The figures of the module docstring for ``policy`` over ``scenarios`` (default all)."""
        names = list(scenarios or self.scenarios())
        saving, jct_up, jct_h, below, counted = [], [], [], 0, False
        moves = pauses = days = 0.0
        carbon_total = energy_total = 0.0
        for scenario, hours in self.starts_s:  # captured_pct is NaN where no optimum was solved
            if scenario not in names:
                continue
            base_c, base_t, _ = self.arrays(scenario, hours, "carbon-agnostic")
            c, t, m = self.arrays(scenario, hours, policy)
            optimum = self.optimum_g.get((scenario, hours), np.full_like(base_c, np.nan))
            counted = counted or (scenario, hours) in self.optimum_g
            saving.append((base_c - c) / base_c * 100.0)
            jct_up.append((t / base_t - 1.0) * 100.0)
            jct_h.append(t / HOUR_S)
            below += int(np.sum(c < optimum * (1.0 - OPTIMUM_RTOL)))
            moves += float(m.sum())
            rows = self.results[(scenario, hours, policy)]
            pauses += float(sum(r.pauses for r in rows))
            energy_total += float(sum(r.energy_j for r in rows))
            days += float(np.nansum(t)) / (24 * HOUR_S)
            carbon_total += float(c.sum())
        cat = np.concatenate
        figures = self.figures(policy, names) if counted else None
        return {
            "captured_pct": _median(figures.captured_pct()) if figures else math.nan,
            "left_out_jobs": float(figures.left_out) if figures else math.nan,
            "deadline_miss_pct": float(np.mean(figures.missed)) * 100.0 if figures else math.nan,
            "worse_than_agnostic_pct": (
                figures.worse_than_agnostic / figures.carbon_g.size * 100.0 if figures else math.nan
            ),
            "saving_pct": _median(cat(saving)) if saving else math.nan,
            "jct_increase_pct": _median(cat(jct_up)) if jct_up else math.nan,
            "migrations_per_day": moves / days if days else math.nan,
            "pauses_per_day": pauses / days if days else math.nan,
            "jct_median_h": _median(cat(jct_h)) if jct_h else math.nan,
            "beats_optimum": float(below),
            "carbon_kg": carbon_total / 1000.0,
            "energy_mwh": energy_total / 3.6e9,
        }

    def optimum_summary(self, scenarios: Sequence[str] | None = None) -> dict[str, float]:
        """Saving of the optimum over carbon-agnostic (median %, and total kg)."""
        names = list(scenarios or self.scenarios())
        saving, total = [], 0.0
        for (scenario, hours), optimum in self.optimum_g.items():
            if scenario in names:
                base_c, _, _ = self.arrays(scenario, hours, "carbon-agnostic")
                saving.append((base_c - optimum) / base_c * 100.0)
                total += float(optimum.sum())
        return {
            "saving_pct": _median(np.concatenate(saving)) if saving else math.nan,
            "carbon_kg": total / 1000.0,
        }


def _median(values: npt.NDArray[np.float64]) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def start_times(traces: SiteTraces, window_s: float, every_s: float = 6 * HOUR_S) -> list[float]:
    """Start times every ``every_s`` from the trace's start whose whole ``window_s`` fits."""
    last = traces.end_s - window_s
    count = math.floor((last - traces.start_s) / every_s + 1e-9) + 1
    return [traces.start_s + i * every_s for i in range(max(0, count))]


# -- running -----------------------------------------------------------------------------------

_WORK: dict[str, object] = {}  # set before forking: what the workers read


def _run_one(task: tuple[int, int, int]) -> tuple[int, int, int, list[JobResult], float]:
    started = time.process_time()
    s, j, p = task
    scenarios: list[Scenario] = _WORK["scenarios"]  # type: ignore[assignment]
    shapes: list[JobShape] = _WORK["shapes"]  # type: ignore[assignment]
    specs: list[PolicySpec] = _WORK["specs"]  # type: ignore[assignment]
    starts: dict[tuple[int, int], list[float]] = _WORK["starts"]  # type: ignore[assignment]
    gpu: GpuProfile = _WORK["gpu"]  # type: ignore[assignment]
    move: MoveModel = _WORK["move"]  # type: ignore[assignment]
    scenario, shape, spec = scenarios[s], shapes[j], specs[p]
    cost = move.cost(shape.checkpoint_gb)
    out = []
    for start_s in starts[(s, j)]:
        job = shape.job(scenario.start_site, start_s)
        policy = spec.build(Rules(deadline_s=job.deadline_s, move_cost=cost))
        out.append(
            simulate_job(
                policy,
                job,
                scenario.traces,
                gpu,
                threshold=spec.threshold,
                forecast=spec.forecast,
                tune_gpu=spec.tune_gpu,
                name=spec.name,
            )
        )
    return s, j, p, out, time.process_time() - started


def _run_group(
    tasks: list[tuple[int, int, int]],
) -> list[tuple[int, int, int, list[JobResult], float]]:
    """Several (scenario, shape, policy) groups in one worker (they share its forecast cache)."""
    return [_run_one(task) for task in tasks]


def _build_table(task: tuple[int, int, ForecastMode]) -> ForecastTable:
    i, row, mode = task
    traces: list[SiteTraces] = _TABLES["traces"]  # type: ignore[assignment]
    return traces[i].build_table(row, mode)


_TABLES: dict[str, object] = {}  # set before forking: what the forecast workers read


def prepare_forecasts(
    traces: Sequence[SiteTraces], modes: Sequence[ForecastMode], *, processes: int = 1
) -> int:
    """Fill every site's forecast table for ``modes`` (each distinct series once, in worker
    processes when ``processes > 1``), so that jobs forked afterwards share them. Returns how
    many tables were computed."""
    todo: dict[tuple[str, int, float, int], tuple[int, int, ForecastMode]] = {}
    for i, t in enumerate(traces):
        for mode in modes:
            for row in t.missing_tables(mode):
                todo.setdefault(t.table_key(row, mode), (i, row, mode))
    if not todo:
        return 0
    tasks = list(todo.values())
    _TABLES["traces"] = list(traces)
    try:
        if processes > 1 and len(tasks) > 1:
            with ProcessPoolExecutor(max_workers=processes, mp_context=get_context("fork")) as pool:
                tables = list(pool.map(_build_table, tasks))
        else:
            tables = [_build_table(task) for task in tasks]
    finally:
        _TABLES.clear()
    for key, table in zip(todo, tables, strict=True):
        for t in traces:
            t.forecast_cache.setdefault(key, table)
    return len(tasks)


def evaluate(
    scenarios: Sequence[Scenario],
    shapes: Sequence[JobShape],
    specs: Sequence[PolicySpec],
    *,
    gpu: GpuProfile,
    move: MoveModel | None = None,
    starts_s: Sequence[float] | None = None,
    every_s: float = 6 * HOUR_S,
    processes: int | None = None,
    optimum: bool = True,
) -> Evaluation:
    """Simulate every (scenario, shape, start, policy) and solve the optimum of every job.

    Args:
        starts_s: start times (default: every ``every_s`` through the trace, where they fit).
        processes: worker processes (default: the CPUs available, at most 4; 1 runs inline).
        optimum: also solve the offline optimum (needs carbon-agnostic among ``specs``).

    Raises:
        ConfigError: no start time fits the trace, or starts off the trace's grid.
    """
    import resource

    def cpu_s() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    started, started_cpu = time.perf_counter(), cpu_s()
    move = move or MoveModel()
    if optimum and not any(s.name == "carbon-agnostic" for s in specs):
        raise ConfigError("the comparison needs carbon-agnostic among the policies")
    starts: dict[tuple[int, int], list[float]] = {}
    for s, scenario in enumerate(scenarios):
        for j, shape in enumerate(shapes):
            window = shape.deadline_factor * shape.gpu_hours * HOUR_S / shape.gpus
            if starts_s is None:
                chosen = start_times(scenario.traces, window, every_s)
            else:
                chosen = [
                    t
                    for t in starts_s
                    if scenario.traces.start_s <= t and t + window <= scenario.traces.end_s
                ]
            if not chosen:
                raise ConfigError(
                    f"no start time leaves room for a {shape.gpu_hours:g} GPU-h job (deadline "
                    f"window {window / HOUR_S:g} h) in {scenario.traces.trace.label}"
                )
            starts[(s, j)] = chosen
    _WORK.update(
        scenarios=list(scenarios),
        shapes=list(shapes),
        specs=list(specs),
        starts=starts,
        gpu=gpu,
        move=move,
    )
    # a policy that forecasts runs each scenario's shapes in one worker (they share its forecast
    # cache); others one (policy, scenario, shape) per task; the slow ones first
    n = processes or min(4, len(os.sched_getaffinity(0)))
    wanted: tuple[ForecastMode, ...] = ("ours", "oracle")
    modes = [m for m in wanted if any(spec.forecast == m for spec in specs)]
    forecasts_cpu = cpu_s()
    prepare_forecasts([sc.traces for sc in scenarios], modes, processes=n)
    parts = {"forecasts": cpu_s() - forecasts_cpu}
    groups: list[list[tuple[int, int, int]]] = []
    for p, spec in enumerate(specs):
        for s in range(len(scenarios)):
            cells = [(s, j, p) for j in range(len(shapes))]
            groups.extend([cells] if spec.forecast == "ours" else [[c] for c in cells])
    groups.sort(key=lambda g: specs[g[0][2]].forecast != "ours")
    evaluation = Evaluation()
    if n > 1:
        with ProcessPoolExecutor(max_workers=n, mp_context=get_context("fork")) as pool:
            done = [row for rows in pool.map(_run_group, groups) for row in rows]
    else:
        done = [row for group in groups for row in _run_group(group)]
    for s, j, p, rows, cpu in done:
        evaluation.results[(scenarios[s].name, shapes[j].gpu_hours, specs[p].name)] = rows
        parts[specs[p].name] = parts.get(specs[p].name, 0.0) + cpu
    optimum_cpu = time.process_time()
    for s, scenario in enumerate(scenarios):
        for j, shape in enumerate(shapes):
            key = (scenario.name, shape.gpu_hours)
            chosen = starts[(s, j)]
            evaluation.starts_s[key] = np.array(chosen)
            if optimum:
                evaluation.optimum_g[key] = optimum_carbon(scenario, shape, chosen, gpu, move)
    _WORK.clear()
    if optimum:
        parts["optimum"] = time.process_time() - optimum_cpu
    evaluation.cpu_seconds_by_part = parts
    evaluation.seconds = time.perf_counter() - started
    evaluation.cpu_seconds = cpu_s() - started_cpu
    return evaluation


def optimum_carbon(
    scenario: Scenario,
    shape: JobShape,
    starts: Sequence[float],
    gpu: GpuProfile,
    move: MoveModel,
) -> npt.NDArray[np.float64]:
    """The offline optimum's carbon (g) of each job of ``shape`` starting at ``starts``.

    Raises:
        ConfigError: a start off the trace's grid.
    """
    traces = scenario.traces
    work_s = shape.gpu_hours * HOUR_S / shape.gpus
    deadline_s = shape.deadline_factor * work_s
    slots = slots_needed(deadline_s, traces.step_s)  # a partial last slot counts
    cols = []
    for t in starts:
        offset = (t - traces.start_s) / traces.step_s
        if abs(offset - round(offset)) > 1e-9:
            raise ConfigError(
                f"start {t} is not on the trace's {traces.step_s:g} s grid; the optimum needs it"
            )
        cols.append(round(offset))
    index = np.array(cols)[:, None] + np.arange(slots)[None, :]
    ci = traces.values.T[np.minimum(index, traces.n_steps - 1)]  # (jobs, slots, sites)
    result = solve(
        ci,
        traces.index[scenario.start_site],
        gpu,
        work_s=work_s,
        gpus=shape.gpus,
        deadline_s=deadline_s,
        slot_s=traces.step_s,
        move_downtime_s=move.cost(shape.checkpoint_gb).downtime_s,
    )
    return result.carbon_g
