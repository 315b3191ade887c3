"""``caftm simulate``: replay intensity traces through the policies and the offline optimum.

Parses the options, calls :func:`caftm.sim.evaluate`, and renders (:mod:`caftm.cli._sim_outputs`)
a comparison table, an optional per-job CSV, PNG plots and an HTML report. Every output says
SIMULATED (SYNTHETIC for a generated trace, ORACLE for a policy that sees the future) and names
the basis, how the trace's times were read as UTC and every note of the loader and the simulator.
Bad input (a job shorter than the trace's step, no start that fits): one error line, exit code 2;
what is left out (a start that does not fit, hours outside the sites' common span) is a note.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from caftm.cli._common import console
from caftm.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np
    import numpy.typing as npt

    from caftm.signals.base import Basis
    from caftm.signals.traces import TraceSource
    from caftm.sim import JobShape, SiteTraces

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


def _basis(text: str | None) -> Basis | None:
    from caftm.signals.base import Basis

    if text is None:
        return None
    try:
        return Basis(text.strip().lower())
    except ValueError:
        raise ConfigError(f"--basis {text!r}: use lifecycle or direct") from None


def _policy_names(values: list[str]) -> list[str]:
    """The names given, ``default`` read as the default policy's name, each once.

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    from caftm.sim.policy_specs import DEFAULT_POLICY, OPTIMUM, SPECS

    names = [DEFAULT_POLICY if n == "default" else n for n in _split(values)]
    unknown = [n for n in names if n not in SPECS and n != OPTIMUM]
    if unknown:
        raise ConfigError(
            f"unknown policy {unknown[0]!r} in --policies; choose from default "
            f"({DEFAULT_POLICY}), {', '.join(SPECS)}, {OPTIMUM}"
        )
    return list(dict.fromkeys(names))


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
        list[str],
        typer.Option(
            "--policies",
            help="Policies to compare (default: all); 'default' is the policy a job with no "
            "policy: section gets; 'optimum' the offline optimum.",
        ),
    ] = [],  # noqa: B006
    basis: Annotated[
        str | None,
        typer.Option(
            "--basis",
            help="lifecycle or direct: the column read where a file has both (Electricity Maps "
            "exports) [default: lifecycle]; a file stating neither is read as this and said so.",
        ),
    ] = None,
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
    from caftm.cli._sim_outputs import SimOutputs, plots, print_table, write_csv, write_report
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
    from caftm.sim.policy_specs import DEFAULT_POLICY

    site_zones = _sites(sites)
    hours = _hours(job)
    shapes = [JobShape(h, gpus, checkpoint_gb, deadline_factor) for h in hours]
    if gpus < 1 or not checkpoint_gb >= 0 or not deadline_factor >= 1.0:
        raise ConfigError("--gpus must be >= 1, --checkpoint-gb >= 0, --deadline-factor >= 1")
    if not (math.isfinite(every_h) and every_h > 0):
        raise ConfigError(f"--every-h {every_h}: give a positive number of hours")
    if processes < 0:
        raise ConfigError(f"--processes {processes}: give 0 (automatic) or more")
    wanted_basis = _basis(basis)
    names = _policy_names(policies)
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
    loaded = load_trace(trace, basis=wanted_basis, zones=list(dict.fromkeys(site_zones.values())))
    _check_basis(loaded, wanted_basis)
    loaded.take_notes()  # kept in loaded.provenance and said in every output
    traces = SiteTraces(loaded, site_zones)
    _check_lengths(shapes, traces)
    given, left_out = _fitting_starts(_starts(starts), shapes, traces)
    gpu = GpuProfile.simulated(workload) if workload else GpuProfile.simulated()
    move = MoveModel()
    evaluation = evaluate(
        [Scenario("sites", traces, start)],
        shapes,
        specs,
        gpu=gpu,
        move=move,
        starts_s=given,
        every_s=every_h * 3600.0,
        processes=processes or None,
        optimum=with_optimum,
    )
    out = SimOutputs(
        evaluation=evaluation,
        specs=specs,
        traces=traces,
        optimum=with_optimum,
        notes=[*traces.assumptions(), *left_out, _starts_note(evaluation.starts_s, given, every_h)],
        default_policy=DEFAULT_POLICY,
        gpu=gpu,
        move=move,
        workload=workload,
    )
    print_table(out)
    if csv_path is not None:
        write_csv(csv_path, out)
        console.print(f"per-job rows (SIMULATED) written to {csv_path}")
    if plot_dir is not None:
        for path in plots(plot_dir, out):
            console.print(f"plot written to {path}")
    if report_path is not None:
        write_report(
            report_path,
            out,
            title=f"simulation: {', '.join(site_zones)} (start {start})",
            source=f"caftm simulate of {', '.join(str(t) for t in trace)}",
            config={
                "sites": site_zones,
                "start_site": start,
                "jobs_gpu_h": hours,
                "gpus": gpus,
                "checkpoint_gb": checkpoint_gb,
                "deadline_factor": deadline_factor,
                "policies": [s.name for s in specs] + ([OPTIMUM] if with_optimum else []),
                "default_policy": DEFAULT_POLICY,
                "basis": wanted_basis.value if wanted_basis else None,
                "every_h": every_h,
                "starts": _split(starts),
            },
        )
        console.print(f"report (SIMULATED) written to {report_path}")


def _check_basis(loaded: TraceSource, asked: Basis | None) -> None:
    """Refuse an explicit ``--basis`` the files state the other way (their numbers differ by
    about a third: a silent swap would change every figure)."""
    provenance = loaded.provenance
    if asked is None or provenance is None or not provenance.stated_by:
        return
    if provenance.basis is not asked:
        first, how = next(iter(provenance.stated_by.items()))
        raise ConfigError(
            f"--basis {asked}: {first} states {provenance.basis} intensities ({how}) and has "
            f"no {asked} column; drop --basis or give a {asked} trace"
        )


def _check_lengths(shapes: list[JobShape], traces: SiteTraces) -> None:
    """Refuse a job that runs shorter than one trace step (policies decide once per step)."""
    step_h = traces.step_s / 3600.0
    for shape in shapes:
        run_h = shape.gpu_hours / shape.gpus
        if run_h < step_h:
            raise ConfigError(
                f"--job {shape.gpu_hours:g}: on {shape.gpus} GPU(s) it runs {run_h:g} h at full "
                f"clock, shorter than the trace's {step_h:g} h step (policies decide once per "
                f"step); give at least {step_h * shape.gpus:g} GPU-h or a finer trace"
            )


def _utc(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _fitting_starts(
    starts_s: list[float] | None, shapes: list[JobShape], traces: SiteTraces
) -> tuple[list[float] | None, list[str]]:
    """The ``--starts`` inside the trace, and a note for each start left out for a job length.

    A start fits a length when the job's whole deadline window lies in the sites' common span.

    Raises:
        ConfigError: no start fits some length.
    """
    if starts_s is None:
        return None, []
    span = f"[{_utc(traces.start_s)}, {_utc(traces.end_s)})"
    notes: list[str] = []
    inside = [t for t in starts_s if t >= traces.start_s]
    before = [_utc(t) for t in starts_s if t < traces.start_s]
    if before:
        notes.append(
            f"--starts {', '.join(before)}: before the sites' common span {span}: left out"
        )
    for shape in shapes:
        window_s = shape.deadline_factor * shape.gpu_hours * 3600.0 / shape.gpus
        late = [_utc(t) for t in inside if t + window_s > traces.end_s]
        what = f"a {shape.gpu_hours:g} GPU-h job (deadline window {window_s / 3600:g} h)"
        if len(late) == len(inside):
            raise ConfigError(
                f"--starts: none leaves room for {what} in the sites' common span {span}"
            )
        if late:
            notes.append(
                f"--starts {', '.join(late)}: {what} would run past the end of the sites' "
                f"common span {span}: left out for that length"
            )
    return inside, notes


def _starts_note(
    chosen: Mapping[tuple[str, float], npt.NDArray[np.float64]],
    given: list[float] | None,
    every_h: float,
) -> str:
    """One line saying which starts were simulated for each job length."""
    parts = []
    for (_, hours), array in chosen.items():
        first, last = _utc(array.min()), _utc(array.max())
        parts.append(
            f"{hours:g} GPU-h: {array.size}, " + (f"{first} to {last}" if array.size > 1 else first)
        )
    how = "as given by --starts" if given is not None else f"every {every_h:g} h where they fit"
    return f"starts {how}: {'; '.join(parts)}"
