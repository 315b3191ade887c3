"""``caftm simulate``: replay intensity traces through the policies and the offline optimum.

Parses the options, calls :func:`caftm.sim.evaluate`, and renders a comparison table (rich), an
optional per-job CSV and PNG plots. Every output says SIMULATED (and SYNTHETIC for a generated
trace, ORACLE for a policy that sees the future). Bad input: one error line, exit code 2.
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.table import Table

from caftm.cli._common import console
from caftm.errors import ConfigError

if TYPE_CHECKING:
    from caftm.sim import Evaluation, GpuProfile, MoveModel, PolicySpec, SiteTraces

_ISO_HELP = "ISO UTC times, comma-separated (e.g. 2022-03-01T00:00Z)"


def register(app: typer.Typer) -> None:
    """Add the ``simulate`` command to ``app``."""
    app.command("simulate")(simulate)


def _split(values: list[str]) -> list[str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _sites(values: list[str]) -> dict[str, str]:
    sites: dict[str, str] = {}
    for item in _split(values):
        name, _, zone = item.partition("=")
        name, zone = name.strip(), (zone or name).strip()
        if not name or not zone:
            raise ConfigError(f"--sites {item!r}: give ZONE or NAME=ZONE")
        if name in sites:
            raise ConfigError(f"--sites names {name!r} twice")
        sites[name] = zone
    if not sites:
        raise ConfigError("--sites: give at least one site (e.g. --sites KR,FR,DE,CA-ON)")
    return sites


def _hours(values: list[str]) -> list[float]:
    out = []
    for item in _split(values):
        text = item.lower().removesuffix("h").strip()
        try:
            hours = float(text)
        except ValueError:
            raise ConfigError(f"--job {item!r}: give GPU-hours, e.g. 24 or 72h") from None
        if not (math.isfinite(hours) and 0.0 < hours <= 24 * 366):
            raise ConfigError(f"--job {item!r}: GPU-hours must be > 0 and at most a year")
        out.append(hours)
    return out or [24.0]


def _starts(values: list[str]) -> list[float] | None:
    items = _split(values)
    if not items:
        return None
    out = []
    for item in items:
        try:
            when = datetime.fromisoformat(item.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"--starts {item!r}: not an ISO time; {_ISO_HELP}") from None
        if when.tzinfo is None:
            raise ConfigError(f"--starts {item!r} has no timezone; {_ISO_HELP}")
        out.append(when.timestamp())
    return out


def simulate(
    sites: Annotated[
        list[str], typer.Option("--sites", help="Sites as zones or NAME=ZONE, comma-separated.")
    ],
    trace: Annotated[
        list[Path],
        typer.Option("--trace", help="Trace file(s): Electricity Maps export, wide CSV, Parquet."),
    ],
    job: Annotated[
        list[str], typer.Option("--job", help="Job length(s) in GPU-hours at full clock.")
    ] = ["24"],  # noqa: B006
    start_site: Annotated[
        str | None, typer.Option("--start-site", help="Where jobs start (default: first site).")
    ] = None,
    policies: Annotated[
        list[str], typer.Option("--policies", help="Policies to compare (default: all).")
    ] = [],  # noqa: B006
    starts: Annotated[list[str], typer.Option("--starts", help=_ISO_HELP + ".")] = [],  # noqa: B006
    every_h: Annotated[
        float, typer.Option("--every-h", help="Without --starts: a start every N hours.")
    ] = 6.0,
    gpus: Annotated[int, typer.Option("--gpus", help="GPUs per job.")] = 1,
    checkpoint_gb: Annotated[float, typer.Option("--checkpoint-gb", help="Checkpoint GB.")] = 2.0,
    deadline_factor: Annotated[
        float, typer.Option("--deadline-factor", help="Deadline as a multiple of the length.")
    ] = 1.5,
    workload: Annotated[
        str, typer.Option("--workload", help="Simulated GPU workload: gpt or resnet50.")
    ] = "gpt",
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write one row per job.")] = None,
    plot_dir: Annotated[
        Path | None, typer.Option("--plot", help="Folder for the PNG plots (must exist).")
    ] = None,
    processes: Annotated[
        int, typer.Option("--processes", help="Worker processes (0: automatic).")
    ] = 0,
    report_path: Annotated[
        Path | None,
        typer.Option("--report", help="Also write one self-contained HTML report here."),
    ] = None,
) -> None:
    """Compare carbon-aware policies and the offline optimum on intensity traces (SIMULATED)."""
    from caftm.signals.traces import load_trace
    from caftm.sim import (
        OPTIMUM,
        GpuProfile,
        JobShape,
        MoveModel,
        Scenario,
        SiteTraces,
        evaluate,
        get_specs,
    )

    site_zones = _sites(sites)
    shapes = [JobShape(h, gpus, checkpoint_gb, deadline_factor) for h in _hours(job)]
    if gpus < 1 or not checkpoint_gb >= 0 or not deadline_factor >= 1.0:
        raise ConfigError("--gpus must be >= 1, --checkpoint-gb >= 0, --deadline-factor >= 1")
    if not (math.isfinite(every_h) and every_h > 0):
        raise ConfigError(f"--every-h {every_h}: give a positive number of hours")
    if processes < 0:
        raise ConfigError(f"--processes {processes}: give 0 (automatic) or more")
    names = _split(policies)
    specs = get_specs(names or None)
    if not any(s.name == "carbon-agnostic" for s in specs):
        specs = [*get_specs(["carbon-agnostic"]), *specs]  # the baseline of every comparison
    with_optimum = not names or OPTIMUM in names
    start = start_site or next(iter(site_zones))
    if plot_dir is not None and not plot_dir.is_dir():
        raise ConfigError(f"--plot {plot_dir}: folder does not exist; create it first")
    if not trace:
        raise ConfigError("--trace: give at least one trace file")
    if report_path is not None:
        from caftm.cli._render import probe_writable

        if not report_path.parent.is_dir():
            raise ConfigError(f"--report {report_path}: folder {report_path.parent} does not exist")
        probe_writable(report_path, option="--report")
    loaded = load_trace(trace, zones=list(dict.fromkeys(site_zones.values())))
    traces = SiteTraces(loaded, site_zones)
    scenario = Scenario("sites", traces, start)
    gpu = GpuProfile.simulated(workload) if workload else GpuProfile.simulated()
    move = MoveModel()
    evaluation = evaluate(
        [scenario],
        shapes,
        specs,
        gpu=gpu,
        move=move,
        starts_s=_starts(starts),
        every_s=every_h * 3600.0,
        processes=processes or None,
        optimum=with_optimum,
    )
    _print_table(evaluation, specs, traces, with_optimum)
    if csv_path is not None:
        _write_csv(csv_path, evaluation, traces)
        console.print(f"per-job rows (SIMULATED) written to {csv_path}")
    if plot_dir is not None:
        for path in _plots(plot_dir, evaluation, specs, traces, gpu, move, with_optimum):
            console.print(f"plot written to {path}")
    if report_path is not None:
        import tempfile

        from caftm.report.html import ReportFigure, ReportInput, ReportTable, write_report

        with tempfile.TemporaryDirectory(prefix="caftm-simulate-") as folder:
            pngs = _plots(Path(folder), evaluation, specs, traces, gpu, move, with_optimum)
            figures = [ReportFigure(p.stem.replace("_", " "), p.read_bytes()) for p in pngs]
        kind = "SYNTHETIC (generated)" if traces.synthetic else "measured"
        header, rows = _rows(evaluation, specs, with_optimum)
        write_report(
            ReportInput(
                title=f"simulation: {', '.join(site_zones)} (start {start})",
                source=f"caftm simulate of {', '.join(str(t) for t in trace)}",
                labels=["SIMULATED", "SIMULATED GPU"]
                + (["SYNTHETIC intensities"] if traces.synthetic else []),
                summary=[
                    (
                        "jobs (start × length)",
                        str(sum(len(v) for v in evaluation.starts_s.values())),
                    ),
                    ("evaluation time", f"{evaluation.seconds:.1f} s"),
                ],
                figures=figures,
                tables=[ReportTable("policies (medians over jobs; * ORACLE)", header, rows)],
                inputs=[
                    (f"intensity trace {traces.trace.label}", kind, traces.synthetic),
                    (f"GPU: {workload}", "simulated model", True),
                ],
                configuration={
                    "sites": site_zones,
                    "start_site": start,
                    "jobs_gpu_h": _hours(job),
                    "gpus": gpus,
                    "checkpoint_gb": checkpoint_gb,
                    "deadline_factor": deadline_factor,
                    "policies": [s.name for s in specs],
                    "every_h": every_h,
                    "starts": _split(starts),
                },
            ),
            report_path,
        )
        console.print(f"report (SIMULATED) written to {report_path}")


def _rows(
    evaluation: Evaluation, specs: list[PolicySpec], optimum: bool
) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The comparison table's header and rows (the terminal table and the report share them)."""
    header: tuple[str, ...] = (
        "policy", "kgCO2", "MWh", "save%", "capt%", "JCT h", "JCT+%", "mv/d", "pz/d",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = []
    for spec in specs:
        s = evaluation.summary(spec.name)
        rows.append((
            f"{spec.name}*" if spec.oracle else spec.name,
            f"{s['carbon_kg']:.1f}",
            f"{s['energy_mwh']:.2f}",
            f"{s['saving_pct']:.1f}",
            f"{s['captured_pct']:.1f}" if optimum else "—",
            f"{s['jct_median_h']:.1f}",
            f"{s['jct_increase_pct']:.1f}",
            f"{s['migrations_per_day']:.2f}",
            f"{s['pauses_per_day']:.2f}",
        ))  # fmt: skip
    if optimum:
        o = evaluation.optimum_summary()
        rows.append(("optimum*", f"{o['carbon_kg']:.1f}", "—", f"{o['saving_pct']:.1f}", "100",
                     "—", "—", "—", "—"))  # fmt: skip
    return header, rows


def _print_table(
    evaluation: Evaluation, specs: list[PolicySpec], traces: SiteTraces, optimum: bool
) -> None:
    kind = "a SYNTHETIC (generated) trace" if traces.synthetic else "a measured trace"
    console.print(
        f"[bold yellow]SIMULATED[/] — {traces.trace.label}, {kind}; GPU: simulated model. "
        f"Jobs: {sum(len(v) for v in evaluation.starts_s.values()) or 'see CSV'} "
        f"(start × length); {evaluation.seconds:.1f} s.",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title="caftm simulate (SIMULATED)", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0))
    header, rows = _rows(evaluation, specs, optimum)
    table.add_column(header[0], no_wrap=True)
    for column in header[1:]:
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column))
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(
        "kgCO2, MWh: all jobs; save% and capt% (share of the optimum's saving): medians over jobs "
        "against carbon-agnostic; JCT h: median completion time, JCT+% its median increase; "
        "mv/d, pz/d: moves and pauses per job-day. "
        "* ORACLE: knows the future (the optimum is the offline lower bound).",
        soft_wrap=True,
    )


def _write_csv(path: Path, evaluation: Evaluation, traces: SiteTraces) -> None:
    trace_kind = "synthetic" if traces.synthetic else "measured"
    try:
        with path.open("w", newline="", encoding="utf-8") as handle:
            out = csv.writer(handle)
            out.writerow(
                [
                    "simulated",
                    "trace_kind",
                    "gpu_hours",
                    "start_utc",
                    "policy",
                    "carbon_g",
                    "energy_j",
                    "jct_h",
                    "moves",
                    "pauses",
                    "finished",
                    "optimum_g",
                ]
            )
            for (_, hours, policy), rows in evaluation.results.items():
                optimum = evaluation.optimum_g.get(("sites", hours))
                for i, r in enumerate(rows):
                    start = datetime.fromtimestamp(r.job.start_s, UTC).isoformat()
                    best = "" if optimum is None else f"{optimum[i]:.3f}"
                    out.writerow(
                        [
                            "true",
                            trace_kind,
                            f"{hours:g}",
                            start,
                            policy,
                            f"{r.carbon_g:.3f}",
                            f"{r.energy_j:.1f}",
                            f"{r.jct_s / 3600.0:.4f}",
                            r.moves,
                            r.pauses,
                            r.finished,
                            best,
                        ]
                    )
    except OSError as e:
        raise ConfigError(f"--csv {path}: cannot write ({e.strerror or e})") from e


def _plots(
    folder: Path,
    evaluation: Evaluation,
    specs: list[PolicySpec],
    traces: SiteTraces,
    gpu: GpuProfile,
    move: MoveModel,
    optimum: bool,
) -> list[Path]:
    from caftm.control.policies import Rules
    from caftm.sim import simulate_job
    from caftm.sim.plots import plot_carbon, plot_path, plot_timeline

    totals = {}
    oracle = []
    for spec in specs:
        totals[spec.name] = evaluation.summary(spec.name)["carbon_kg"]
        if spec.oracle:
            oracle.append(spec.name)
    if optimum:
        totals["optimum"] = evaluation.optimum_summary()["carbon_kg"]
    first = next(iter(evaluation.results.values()))[0].job  # the first job, replayed in detail
    replayed = []
    for spec in specs:
        rules = Rules(deadline_s=first.deadline_s, move_cost=move.cost(first.checkpoint_gb))
        replayed.append(
            simulate_job(
                spec.build(rules),
                first,
                traces,
                gpu,
                threshold=spec.threshold,
                forecast=spec.forecast,
                tune_gpu=spec.tune_gpu,
                record=True,
                name=spec.name,
            )
        )
    shown = next((r for r in replayed if r.policy == "forecast-caftm"), replayed[-1])
    return [
        plot_carbon(totals, folder / "carbon_per_policy.png", traces=traces, oracle=oracle),
        plot_timeline(replayed, folder / "timeline.png", traces=traces),
        plot_path(shown, folder / "intensity_and_path.png", traces=traces),
    ]
