"""Carbon-aware policies against the offline optimum on real grids, many of them (SIMULATED jobs).

Jobs: 24 h and 72 h of full-clock work (1 GPU; simulated H100 running the ``gpt`` workload; 2 GB
checkpoints), each evaluated at two deadline factors, **1.5** and **1.1** (the default deadline),
each against the optimum for the same deadline. Every policy runs at the shipped defaults except
for what its name says (:mod:`caftm.sim.policy_specs`); "default" is
:data:`caftm.sim.policy_specs.DEFAULT_POLICY`, whatever ships.

What is evaluated:

* **headline** — the two named site sets, both starting in KR: the original work's (KR, FR, DE,
  CA-ON) and a harder one without a near-zero site (KR, JP-TK, DE, GB, US-CAL-CISO,
  US-MIDA-PJM); 2022 hourly lifecycle intensity (Electricity Maps, ODbL); jobs starting every
  6 h through 2022. Timed: ``sim_seconds``.
* **family** — site sets drawn (seeded, deterministic: :func:`family_sets`) from the 123 zones
  of the same file: pairs, triples, quads, a six, sets where no site is ever below 300 g/kWh
  ("dirty"), and single sites (only waiting and the GPU clock can help); plus, from the
  Electricity Maps exports (BR, ES, NO, US-CAL-CISO), pairs and the quad on **both accounting
  bases** (direct and lifecycle), replayed over 2021–2022 with jobs starting in 2022 only: what
  anything learns from (the forecaster's history and model choice, a relative θ's history)
  reaches back into 2021 and nothing of 2022 before it happens ("cross-year"). Every set is run
  from **every start site**; a case is one (set, basis, start site). Starts are sampled more
  sparsely than the headline's (every ``FAMILY_EVERY_H`` h, which walks through the hours of
  the day) so that the whole bench fits its time.

A captured share (``(C_agnostic − C) / (C_agnostic − C_optimum)``) counts only jobs where the
optimum saves ≥ 2 % of carbon-agnostic's carbon; ``left_out_jobs`` says how many did not.

Keys (flat; unprefixed = the default policy; suffix ``_dl1_1`` = deadline factor 1.1, none = 1.5):
``captured_pct_seed_sites``, ``captured_pct_hard_sites`` (median over jobs);
``captured_pct_median_sets`` and ``captured_pct_p10_sets`` (median and 10th percentile over the
family's multi-site cases of each case's median); ``captured_pct_dirty_sets`` (median over the
dirty cases); ``captured_pct_wait_only`` (median over the single-site jobs);
``captured_pct_cross_year`` (median over the cross-year jobs, both bases);
``jct_increase_pct`` and ``jct_increase_p90_pct`` (over every job of that factor);
over everything: ``deadline_miss_pct``, ``beats_optimum_jobs`` (on-time jobs below the optimum for
their deadline; the bench fails unless 0: a policy beating the optimum is a bug; a late job counts
as missed instead), ``worse_than_agnostic_pct`` (jobs > 1 % above carbon-agnostic).
Every other policy's figures beside them, prefixed by its name (``greedy_cleanest_...``).
``headline_start_every_h``/``family_start_every_h``/``thinned``: the sampling
(``CAFTM_BENCH_EVERY_H`` thins it for a quick run; the family keeps two starts at least).
``sim_seconds``/``sim_cpu_seconds``: the headline evaluation (both factors; wall and CPU time,
workers included); ``sim_cpu_seconds_<part>``: its CPU time per policy, the optimum and the
shared forecast tables; ``headline_solves``: plans the default solved there, and
``headline_cpu_ms_per_solve`` its CPU time (all its decision work) per solve;
``bench_seconds``: the whole bench, family included.
"""

from __future__ import annotations

import glob
import math
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from caftm.signals.base import Basis
from caftm.signals.traces import TraceSource, load_trace
from caftm.sim import (
    Evaluation,
    GpuProfile,
    JobShape,
    MoveModel,
    Scenario,
    SiteTraces,
    evaluate,
    get_specs,
    optimum_carbon,
)
from caftm.sim.evaluate import JobFigures, concat
from caftm.sim.policy_specs import DEFAULT_POLICY
from caftm.sim.site_traces import ForecastCache

SEED_SITES = ("KR", "FR", "DE", "CA-ON")
HARD_SITES = ("KR", "JP-TK", "DE", "GB", "US-CAL-CISO", "US-MIDA-PJM")
POLICIES = list(
    dict.fromkeys(
        [
            "carbon-agnostic",
            DEFAULT_POLICY,
            "gpu-only",
            "seed-caftm",
            "caftm",
            "forecast-caftm",
            "forecast-caftm-oracle",
            "suspend-resume",
            "greedy-cleanest",
        ]
    )
)
TRACE = "carbon/ci_2022_hourly_lca_123zones.csv"
EXPORTS = "carbon/electricitymaps_export/*_hourly.csv"
FACTORS = (1.5, 1.1)
SHAPES_H = (24.0, 72.0)
FAMILY_SEED = 2022
#: The family's jobs start this often (7 days and 5 hours: the start hour walks round the day).
FAMILY_EVERY_H = 173
#: ``CAFTM_BENCH_EVERY_H`` (hours, default the issue's 6): thins the headline's starts to one every
#: that many hours, and the family's by the same ratio (a quick run; recorded in the results).
EVERY_H_ENV = "CAFTM_BENCH_EVERY_H"
HEADLINE_EVERY_H = 6.0
#: Below this no site of a "dirty" set ever goes, g/kWh.
DIRTY_FLOOR = 300.0
YEAR_2022_S = datetime(2022, 1, 1, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class SiteSet:
    """One drawn set: its zones, its kind and where its data comes from."""

    name: str
    kind: str  # pair, triple, quad, six, dirty, single, cross-year
    zones: tuple[str, ...]
    source: str  # "lca-2022" or "export-direct" / "export-lifecycle" (2021–2022)


def _data_dir() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    default = os.path.join(here, "..", "..", "shared", "data")
    return os.environ.get("CAFTM_SHARED_DATA", default)


def _key(name: str) -> str:
    return name.replace("-", "_")


def _suffix(factor: float) -> str:
    return "" if factor == 1.5 else "_dl" + f"{factor:g}".replace(".", "_")


def family_sets(
    zones: Sequence[str], minimum: Sequence[float], export_zones: Sequence[str]
) -> list[SiteSet]:
    """The family, drawn with :data:`FAMILY_SEED` (same inputs, same sets).

    Args:
        zones, minimum: the 123-zone file's zones and each one's lowest intensity of the year.
        export_zones: the zones of the Electricity Maps exports (both bases, 2021–2022).
    """
    rng = np.random.default_rng(FAMILY_SEED)
    pool = sorted(zones)
    low = dict(zip(zones, minimum, strict=True))
    dirty = sorted(z for z in pool if low[z] >= DIRTY_FLOOR)
    out: list[SiteSet] = []

    def draw(kind: str, size: int, count: int, among: list[str]) -> None:
        seen = {s.zones for s in out}
        made = 0
        while made < count:
            picked = tuple(sorted(rng.choice(among, size=size, replace=False).tolist()))
            if picked in seen:
                continue
            seen.add(picked)
            made += 1
            out.append(SiteSet(f"{kind}-{made}", kind, picked, "lca-2022"))

    draw("pair", 2, 6, pool)
    draw("triple", 3, 4, pool)
    draw("quad", 4, 2, pool)
    draw("six", 6, 1, pool)
    if len(dirty) >= 3:
        draw("dirty", 2, 2, dirty)
        draw("dirty", 3, 1, dirty)
    draw("single", 1, 6, pool)
    exports = sorted(export_zones)
    pairs = [(a, b) for i, a in enumerate(exports) for b in exports[i + 1 :]]
    chosen = [pairs[i] for i in sorted(rng.choice(len(pairs), size=3, replace=False).tolist())]
    for basis in ("direct", "lifecycle"):
        for n, picked in enumerate([*chosen, tuple(exports)], 1):
            name = f"cross-year-{basis}-{n}"
            out.append(SiteSet(name, "cross-year", tuple(picked), f"export-{basis}"))
    return out


def family_scenarios(
    sets: Sequence[SiteSet], traces: dict[str, TraceSource], cache: ForecastCache
) -> tuple[list[Scenario], dict[str, SiteSet]]:
    """One scenario per (set, start site); and which set each scenario is."""
    scenarios, of = [], {}
    for site_set in sets:
        sites = SiteTraces(
            traces[site_set.source], {z: z for z in site_set.zones}, forecast_cache=cache
        )
        for start in site_set.zones:
            name = f"{site_set.name}@{start}"
            scenarios.append(Scenario(name, sites, start))
            of[name] = site_set
    return scenarios, of


def headline_every_h() -> float:
    """Hours between the headline's starts: :data:`EVERY_H_ENV` if set, else 6.

    Raises:
        ValueError: the variable is not a whole number of hours ≥ 1.
    """
    raw = os.environ.get(EVERY_H_ENV, "").strip()
    if not raw:
        return HEADLINE_EVERY_H
    try:
        hours = float(raw)
    except ValueError:
        hours = math.nan
    if not (hours >= 1 and hours == int(hours)):
        raise ValueError(f"{EVERY_H_ENV}={raw!r}: give whole hours ≥ 1")
    return hours


def family_every_h(headline_h: float | None = None) -> int:
    """Hours between the family's starts: :data:`FAMILY_EVERY_H`, thinned like the headline's."""
    ratio = (headline_h or headline_every_h()) / HEADLINE_EVERY_H
    return max(1, min(round(FAMILY_EVERY_H * ratio), 365 * 24 // 2))  # two starts at least


def family_starts(every_h: int = FAMILY_EVERY_H) -> list[float]:
    """The family's start times (2022, every ``every_h`` hours)."""
    return [YEAR_2022_S + k * every_h * 3600.0 for k in range(365 * 24 // every_h)]


def check_optimum(evaluations: Sequence[Evaluation]) -> int:
    """Jobs on which any policy beat the optimum, over ``evaluations``.

    Raises:
        AssertionError: there is one (the optimum is a lower bound; beating it is a bug).
    """
    beaten: dict[str, int] = {}
    lines: list[str] = []
    for evaluation in evaluations:
        for policy in evaluation.policies():
            n = evaluation.figures(policy).beats_optimum
            if n:
                beaten[policy] = beaten.get(policy, 0) + n
                lines.extend(evaluation.beaten(policy))
    if beaten:
        raise AssertionError(
            f"simulated job(s) beat the offline optimum (a bug): {beaten}\n" + "\n".join(lines)
        )
    return 0


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return round(float(np.median(finite)), 2) if finite.size else math.nan


def _p(values: np.ndarray, q: float) -> float:
    finite = values[np.isfinite(values)]
    return round(float(np.percentile(finite, q)), 2) if finite.size else math.nan


def run() -> dict[str, float | int | str | bool]:
    path = os.path.join(_data_dir(), TRACE)
    exports = sorted(glob.glob(os.path.join(_data_dir(), EXPORTS)))
    if not os.path.exists(path) or not exports:
        return {"skipped": f"real data absent under {_data_dir()} (set CAFTM_SHARED_DATA)"}
    every_h = headline_every_h()
    fam_every_h = family_every_h(every_h)
    bench_started, bench_cpu = time.perf_counter(), _cpu_s()
    load = os.getloadavg()[0]
    lca = load_trace(path)
    traces = {
        "lca-2022": lca,
        "export-direct": load_trace(exports, basis=Basis.DIRECT),
        "export-lifecycle": load_trace(exports, basis=Basis.LIFECYCLE),
    }
    load_s = time.perf_counter() - bench_started
    cache: ForecastCache = {}
    headline = [
        Scenario("seed", SiteTraces(lca, {z: z for z in SEED_SITES}, forecast_cache=cache), "KR"),
        Scenario("hard", SiteTraces(lca, {z: z for z in HARD_SITES}, forecast_cache=cache), "KR"),
    ]
    sets = family_sets(
        lca.zones(), np.min(lca.values, axis=1).tolist(), traces["export-direct"].zones()
    )
    family, set_of = family_scenarios(sets, traces, cache)
    specs = get_specs(POLICIES)
    gpu = GpuProfile.simulated("gpt")
    out: dict[str, float | int | str | bool] = {}
    sim_s = sim_cpu = 0.0
    parts: dict[str, float] = {}
    runs: dict[float, tuple[Evaluation, Evaluation]] = {}
    for factor in FACTORS:
        shapes = [JobShape(h, deadline_factor=factor) for h in SHAPES_H]
        head = evaluate(headline, shapes, specs, gpu=gpu, every_s=every_h * 3600.0)
        sim_s += head.seconds
        sim_cpu += head.cpu_seconds
        for part, cpu in head.cpu_seconds_by_part.items():
            parts[part] = parts.get(part, 0.0) + cpu
        fam = evaluate(family, shapes, specs, gpu=gpu, starts_s=family_starts(fam_every_h))
        runs[factor] = (head, fam)
    everything = [e for pair in runs.values() for e in pair]
    for spec in specs:
        prefix = "" if spec.name == DEFAULT_POLICY else _key(spec.name) + "_"
        out.update(_figures(prefix, spec.name, runs, set_of))
        pooled = concat([e.figures(spec.name) for e in everything])
        out[f"{prefix}deadline_miss_pct"] = round(float(np.mean(pooled.missed)) * 100.0, 3)
        out[f"{prefix}beats_optimum_jobs"] = pooled.beats_optimum
        out[f"{prefix}worse_than_agnostic_pct"] = round(
            pooled.worse_than_agnostic / pooled.carbon_g.size * 100.0, 3
        )
        head15 = runs[1.5][0].summary(spec.name)
        out[f"{prefix}migrations_per_day"] = round(head15["migrations_per_day"], 3)
        out[f"{_key(spec.name)}_pauses_per_day"] = round(head15["pauses_per_day"], 3)
    out["beats_optimum_jobs_all_policies"] = check_optimum(everything)
    for factor, (head, fam) in runs.items():
        sfx = _suffix(factor)
        for scenario in ("seed", "hard"):
            o = head.optimum_summary([scenario])
            out[f"optimum_saving_pct_{scenario}_sites{sfx}"] = round(o["saving_pct"], 2)
        any_policy = concat([head.figures(DEFAULT_POLICY), fam.figures(DEFAULT_POLICY)])
        out[f"left_out_jobs{sfx}"] = any_policy.left_out
        out[f"counted_jobs{sfx}"] = int(any_policy.eligible.sum())
    out.update(_why(runs[1.5][0], headline, gpu))
    if "forecast-caftm-oracle" in POLICIES:
        head = runs[1.5][0]
        ours = head.summary("forecast-caftm")["carbon_kg"]
        oracle = head.summary("forecast-caftm-oracle")["carbon_kg"]
        agnostic = head.summary("carbon-agnostic")["carbon_kg"]
        out["oracle_forecast_gain_pct"] = round((ours - oracle) / agnostic * 100.0, 3)
    out["default_policy"] = DEFAULT_POLICY
    out["sim_seconds"] = round(sim_s, 1)
    out["sim_cpu_seconds"] = round(sim_cpu, 1)
    out["load_seconds"] = round(load_s, 1)
    for part, cpu in parts.items():
        out[f"sim_cpu_seconds_{_key(part)}"] = round(cpu, 1)
    solves = sum(runs[f][0].solves(DEFAULT_POLICY) for f in FACTORS)
    out["headline_solves"] = solves
    out["headline_cpu_ms_per_solve"] = round(parts[DEFAULT_POLICY] / max(1, solves) * 1000.0, 2)
    out["headline_jobs"] = sum(
        len(v) for e in (runs[f][0] for f in FACTORS) for v in e.starts_s.values()
    )
    out["family_sets"] = len(sets)
    out["family_cases"] = len(family)
    out["family_jobs"] = sum(
        len(v) for e in (runs[f][1] for f in FACTORS) for v in e.starts_s.values()
    )
    out["headline_start_every_h"] = every_h
    out["family_start_every_h"] = fam_every_h
    out["thinned"] = every_h != HEADLINE_EVERY_H
    out["family_seed"] = FAMILY_SEED
    out["simulated_job_runs"] = sum(len(v) for e in everything for v in e.results.values())
    out["cpus"] = len(os.sched_getaffinity(0))
    out["load_average_at_start"] = round(load, 2)
    out["target_sim_seconds"] = 60.0
    out["target_bench_seconds"] = 600.0
    out["data"] = (
        "Electricity Maps 2022 hourly LCA, 123 zones, and 2021-2022 exports (direct and LCA; "
        "ODbL); GPU SIMULATED (H100 model, gpt)"
    )
    out["bench_seconds"] = round(time.perf_counter() - bench_started, 1)
    out["bench_cpu_seconds"] = round(_cpu_s() - bench_cpu, 1)
    out["load_average_at_end"] = round(os.getloadavg()[0], 2)
    return out


def _figures(
    prefix: str,
    policy: str,
    runs: dict[float, tuple[Evaluation, Evaluation]],
    set_of: dict[str, SiteSet],
) -> dict[str, float | int | str | bool]:
    """One policy's captured shares and completion times, at each deadline factor."""
    out: dict[str, float | int | str | bool] = {}
    for factor, (head, fam) in runs.items():
        sfx = _suffix(factor)
        for scenario in ("seed", "hard"):
            captured = head.figures(policy, [scenario]).captured_pct()
            out[f"{prefix}captured_pct_{scenario}_sites{sfx}"] = _median(captured)
        multi = [n for n, s in set_of.items() if s.kind != "single"]
        per_case = np.array([_median(fam.figures(policy, [n]).captured_pct()) for n in multi])
        out[f"{prefix}captured_pct_median_sets{sfx}"] = _median(per_case)
        out[f"{prefix}captured_pct_p10_sets{sfx}"] = _p(per_case, 10)
        out[f"{prefix}cases_without_counted_jobs{sfx}"] = int(np.sum(~np.isfinite(per_case)))
        for label, kind in (
            ("dirty_sets", "dirty"),
            ("wait_only", "single"),
            ("cross_year", "cross-year"),
        ):
            names = [n for n, s in set_of.items() if s.kind == kind]
            if kind == "dirty":
                values = np.array([_median(fam.figures(policy, [n]).captured_pct()) for n in names])
            else:
                values = fam.figures(policy, names).captured_pct()
            out[f"{prefix}captured_pct_{label}{sfx}"] = _median(values)
        for basis in ("direct", "lifecycle"):
            names = [n for n, s in set_of.items() if s.source == f"export-{basis}"]
            values = fam.figures(policy, names).captured_pct()
            out[f"{prefix}captured_pct_cross_year_{basis}{sfx}"] = _median(values)
        every: JobFigures = concat([head.figures(policy), fam.figures(policy)])
        jct = (every.jct_ratio - 1.0) * 100.0
        out[f"{prefix}jct_increase_pct{sfx}"] = _median(jct)
        out[f"{prefix}jct_increase_p90_pct{sfx}"] = _p(jct, 90)
    return out


def _why(
    evaluation: Evaluation, scenarios: list[Scenario], gpu: GpuProfile
) -> dict[str, float | int | str | bool]:
    """What the optimum does that the default does not (deadline 1.5): the optimum held at the
    GPU's default clock (moves and waiting only), and the default's share of that optimum."""
    out: dict[str, float | int | str | bool] = {}
    fixed = gpu.default_only()
    for scenario in scenarios:
        saving, captured = [], []
        for hours in SHAPES_H:
            key = (scenario.name, hours)
            starts = evaluation.starts_s[key].tolist()
            best = optimum_carbon(scenario, JobShape(hours), starts, fixed, MoveModel())
            base, _, _ = evaluation.arrays(scenario.name, hours, "carbon-agnostic")
            ours, _, _ = evaluation.arrays(scenario.name, hours, DEFAULT_POLICY)
            saving.append((base - best) / base * 100.0)
            captured.append((base - ours) / (base - best) * 100.0)
        name = scenario.name
        out[f"optimum_default_clock_saving_pct_{name}_sites"] = _median(np.concatenate(saving))
        out[f"captured_of_default_clock_optimum_pct_{name}_sites"] = _median(
            np.concatenate(captured)
        )
    return out
