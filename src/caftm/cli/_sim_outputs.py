"""What ``caftm simulate`` writes: the rich table, the per-job CSV, the PNG plots and the HTML
report. Every one says SIMULATED, names the basis, how the trace's times were read as UTC, and
every note of the loader and the simulator (:attr:`SimOutputs.notes`)."""

from __future__ import annotations

import csv
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from caftm.cli._common import console
from caftm.errors import ConfigError

if TYPE_CHECKING:
    from caftm.sim import Evaluation, GpuProfile, MoveModel, PolicySpec, SiteTraces

#: Said where the optimum was not asked for (the capture column needs it).
NO_OPTIMUM = "capt% needs the optimum: add 'optimum' to --policies (it is not computed without)"


@dataclass(frozen=True)
class SimOutputs:
    """One simulation's results and everything its outputs must state.

    Attributes:
        notes: the basis line, the times line, the loader's notes and the simulator's (trimmed
            span, starts left out), one line each, in that order.
        default_policy: the name of the policy a job with no ``policy:`` section gets.
    """

    evaluation: Evaluation
    specs: list[PolicySpec]
    traces: SiteTraces
    optimum: bool
    notes: list[str]
    default_policy: str
    gpu: GpuProfile
    move: MoveModel
    workload: str

    def label(self, spec: PolicySpec) -> str:
        """A policy's name in tables: ``*`` for ORACLE, ``(default)`` for the default policy."""
        name = f"{spec.name}*" if spec.oracle else spec.name
        return f"{name} (default)" if spec.name == self.default_policy else name

    @property
    def jobs(self) -> int:
        return sum(len(v) for v in self.evaluation.starts_s.values())


def rows(out: SimOutputs) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The comparison table's header and rows (the terminal table and the report share them)."""
    header: tuple[str, ...] = (
        "policy", "kgCO2", "MWh", "save%", "capt%", "JCT h", "JCT+%", "mv/d", "pz/d",
    )  # fmt: skip
    body: list[tuple[str, ...]] = []
    for spec in out.specs:
        s = out.evaluation.summary(spec.name)
        body.append((
            out.label(spec),
            f"{s['carbon_kg']:.1f}",
            f"{s['energy_mwh']:.2f}",
            f"{s['saving_pct']:.1f}",
            f"{s['captured_pct']:.1f}" if out.optimum else "—",
            f"{s['jct_median_h']:.1f}",
            f"{s['jct_increase_pct']:.1f}",
            f"{s['migrations_per_day']:.2f}",
            f"{s['pauses_per_day']:.2f}",
        ))  # fmt: skip
    if out.optimum:
        o = out.evaluation.optimum_summary()
        body.append(("optimum*", f"{o['carbon_kg']:.1f}", "—", f"{o['saving_pct']:.1f}", "100",
                     "—", "—", "—", "—"))  # fmt: skip
    return header, body


def print_table(out: SimOutputs) -> None:
    """The comparison on the terminal, with the notes above it."""
    traces = out.traces
    kind = "a SYNTHETIC (generated) trace" if traces.synthetic else "a measured trace"
    console.print(
        f"[bold yellow]SIMULATED[/] — {traces.trace.label}, {kind}; GPU: simulated model. "
        f"Jobs: {out.jobs} (start × length); {out.evaluation.seconds:.1f} s.",
        highlight=False,
        soft_wrap=True,
    )
    for line in out.notes:
        prefix = "" if line.startswith(("basis:", "times:")) else "note: "
        console.print(f"{prefix}{line}", highlight=False, markup=False, soft_wrap=True)
    table = Table(title="caftm simulate (SIMULATED)", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    header, body = rows(out)
    table.add_column(header[0], no_wrap=True)
    for column in header[1:]:
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    for row in body:
        table.add_row(*row)
    console.print(table)
    console.print(
        "kgCO2, MWh: all jobs; save% and capt% (share of the optimum's saving): medians over jobs "
        "against carbon-agnostic; JCT h: median completion time, JCT+% its median increase; "
        "mv/d, pz/d: moves and pauses per job-day. "
        "* ORACLE: knows the future (the optimum is the offline lower bound). "
        "(default): the policy a job with no policy: section gets.",
        soft_wrap=True,
    )
    if not out.optimum:
        console.print(NO_OPTIMUM, soft_wrap=True, highlight=False, markup=False)


def write_csv(path: Path, out: SimOutputs) -> None:
    """One row per (job length, start, policy); every row carries the basis, times and notes.

    Raises:
        ConfigError: the file cannot be written.
    """
    trace_kind = "synthetic" if out.traces.synthetic else "measured"
    basis, times, notes = _split_notes(out.notes)
    header = [
        "simulated", "trace_kind", "basis", "times", "gpu_hours", "start_utc", "policy",
        "default", "carbon_g", "energy_j", "jct_h", "moves", "pauses", "finished", "optimum_g",
        "notes",
    ]  # fmt: skip
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            for (scenario, hours, policy), results in out.evaluation.results.items():
                optimum = out.evaluation.optimum_g.get((scenario, hours))
                for i, r in enumerate(results):
                    writer.writerow([
                        "true", trace_kind, basis, times, f"{hours:g}",
                        datetime.fromtimestamp(r.job.start_s, UTC).isoformat(), policy,
                        str(policy == out.default_policy).lower(), f"{r.carbon_g:.3f}",
                        f"{r.energy_j:.1f}", f"{r.jct_s / 3600.0:.4f}", r.moves, r.pauses,
                        r.finished, "" if optimum is None else f"{optimum[i]:.3f}", notes,
                    ])  # fmt: skip
    except OSError as e:
        raise ConfigError(f"--csv {path}: cannot write ({e.strerror or e})") from e


def _split_notes(notes: list[str]) -> tuple[str, str, str]:
    """(basis, times, the other notes joined by " | ") for the CSV's columns."""
    basis = next((n.removeprefix("basis: ") for n in notes if n.startswith("basis:")), "")
    times = next((n.removeprefix("times: ") for n in notes if n.startswith("times:")), "")
    rest = [n for n in notes if not n.startswith(("basis:", "times:"))]
    return basis, times, " | ".join(rest)


def plots(folder: Path, out: SimOutputs) -> list[Path]:
    """The three PNGs (carbon per policy, one job's timeline, its path); each carries the notes."""
    from caftm.control.policies import Rules
    from caftm.sim import simulate_job
    from caftm.sim.plots import plot_carbon, plot_path, plot_timeline

    evaluation, traces = out.evaluation, out.traces
    totals = {out.label(s): evaluation.summary(s.name)["carbon_kg"] for s in out.specs}
    oracle = [out.label(s) for s in out.specs if s.oracle]
    if out.optimum:
        totals["optimum"] = evaluation.optimum_summary()["carbon_kg"]
    first = next(iter(evaluation.results.values()))[0].job  # the first job, replayed in detail
    replayed = []
    for spec in out.specs:
        rules = Rules(deadline_s=first.deadline_s, move_cost=out.move.cost(first.checkpoint_gb))
        replayed.append(
            simulate_job(
                spec.build(rules),
                first,
                traces,
                out.gpu,
                threshold=spec.threshold,
                forecast=spec.forecast,
                tune_gpu=spec.tune_gpu,
                record=True,
                name=spec.name,
            )
        )
    shown = next((r for r in replayed if r.policy == out.default_policy), replayed[-1])
    notes = out.notes
    return [
        plot_carbon(totals, folder / "carbon_per_policy.png", traces=traces, oracle=oracle,
                    notes=notes),
        plot_timeline(replayed, folder / "timeline.png", traces=traces, notes=notes),
        plot_path(shown, folder / "intensity_and_path.png", traces=traces, notes=notes),
    ]  # fmt: skip


def write_report(path: Path, out: SimOutputs, *, title: str, source: str, config: Any) -> None:
    """The self-contained HTML report: labels, summary (basis, times), figures, the comparison,
    the notes, the inputs and the configuration."""
    from caftm.report.html import ReportFigure, ReportInput, ReportTable
    from caftm.report.html import write_report as write_html

    with tempfile.TemporaryDirectory(prefix="caftm-simulate-") as folder:
        pngs = plots(Path(folder), out)
        figures = [ReportFigure(p.stem.replace("_", " "), p.read_bytes()) for p in pngs]
    traces = out.traces
    kind = "SYNTHETIC (generated)" if traces.synthetic else "measured"
    basis, times, _ = _split_notes(out.notes)
    header, body = rows(out)
    tables = [ReportTable("policies (medians over jobs; * ORACLE)", header, body)]
    tables.append(ReportTable("what the simulation assumed", ("note",), [(n,) for n in out.notes]))
    summary = [
        ("jobs (start × length)", str(out.jobs)),
        ("basis", basis),
        ("times", times),
        ("default policy", out.default_policy),
        ("evaluation time", f"{out.evaluation.seconds:.1f} s"),
    ]
    if not out.optimum:
        summary.append(("capt%", NO_OPTIMUM))
    write_html(
        ReportInput(
            title=title,
            source=source,
            labels=["SIMULATED", "SIMULATED GPU"]
            + (["SYNTHETIC intensities"] if traces.synthetic else []),
            summary=summary,
            figures=figures,
            tables=tables,
            inputs=[
                (f"intensity trace {traces.trace.label} ({basis})", kind, traces.synthetic),
                (f"GPU: {out.workload}", "simulated model", True),
            ],
            configuration=config,
        ),
        path,
    )
