"""``caftm run``, ``jobs``, ``status``, ``cancel`` and ``validate``: the job supervisor's commands.

They parse, call :mod:`caftm.jobs` and render with rich. ``caftm run`` shows a live line per job
(site, state, step/total, GPU setting, intensity, carbon so far); events that change the job's
fate (a move, a pause, a preemption, a crash) are printed above it as they happen.
"""

from __future__ import annotations

import math
import signal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.live import Live
from rich.table import Table
from rich.text import Text

from caftm.cli._common import console
from caftm.errors import ConfigError
from caftm.jobs.spec import load_job
from caftm.ledger import (
    JobBook,
    JobRecord,
    JobStatus,
    Ledger,
    TransferStatus,
    default_ledger_path,
    ledger_location,
    ledger_missing,
)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Ledger file or postgresql:// URL (default: $CAFTM_LEDGER or ~/.local/share/caftm).",
    ),
]
JobFile = Annotated[Path, typer.Argument(help="The job's YAML (see examples/job.yaml).")]
JobArgument = Annotated[
    str, typer.Argument(help="The job's name, or its YAML (its ledger.path is then used).")
]

_UNITS = {"clock": "MHz", "power": "W"}


def register(app: typer.Typer) -> None:
    """Add the job commands to ``app``."""
    app.command("run")(run_command)
    app.command("validate")(validate_command)
    app.command("jobs")(jobs_command)
    app.command("status")(status_command)
    app.command("cancel")(cancel_command)


def run_command(
    job_file: JobFile,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress line.")] = False,
    standby: Annotated[
        bool,
        typer.Option(
            "--standby",
            help="If another supervisor runs the job, wait and take it over when its lease "
            "expires (its host died) instead of refusing.",
        ),
    ] = False,
) -> None:
    """Run a job to its end: start, move, pause and restart its worker as caftm decides."""
    from caftm.jobs.supervisor import Supervisor
    from caftm.jobs.validate import check_job

    spec = load_job(job_file)
    check_job(spec)
    if quiet or not console.is_terminal:
        supervisor = Supervisor(spec, standby=standby)
        job = _supervise(supervisor)
    else:
        with Live(Text(""), console=console, refresh_per_second=4, transient=True) as live:
            supervisor = Supervisor(
                spec, standby=standby, on_update=lambda view: live.update(progress_line(view))
            )
            job = _supervise(supervisor)
    print_summary(JobBook(Ledger(spec.ledger_path)), job)
    if supervisor.stopped_by is not None and not job.status.finished:
        raise typer.Exit(128 + signal.Signals[supervisor.stopped_by].value)  # Ctrl-C: 130
    if job.status is JobStatus.FAILED:
        raise typer.Exit(1)


def _supervise(supervisor: Any) -> JobRecord:
    try:
        job: JobRecord = supervisor.run()
        return job
    finally:
        supervisor.close()


def progress_line(view: Any) -> Text:
    """One line: job, site, state, step/total, GPU setting with unit, CI, carbon so far."""
    from caftm.jobs.view import format_time

    job, status = view.job, view.status
    step = status.get("step", job.step)
    total = status.get("total_steps")
    setting = status.get("setting")
    unit = _UNITS.get(str(status.get("knob")), "")
    ci = status.get("intensity_g_per_kwh")
    carbon = status.get("carbon_g")
    parts = [
        f"[bold]{job.name}[/] leg {job.leg} at [cyan]{status.get('site', job.site)}[/]",
        f"{job.status.value}" + (f"/{status['state']}" if "state" in status else ""),
        f"step {step}" + (f"/{total}" if total else ""),
    ]
    if job.status is JobStatus.PAUSED and job.pause_until is not None:
        parts.append(f"paused until {format_time(job.pause_until.timestamp())}")
    if "setting" in status:
        simulated = " (SIMULATED GPU)" if status.get("simulated_gpu") else ""
        shown = "default" if setting is None else f"{setting:.0f} {unit}"
        parts.append(f"GPU {shown}{simulated}")
    if isinstance(ci, int | float) and math.isfinite(ci):
        parts.append(f"{ci:.0f} gCO2/kWh")
    if isinstance(carbon, int | float):
        parts.append(f"{carbon:.2f} g so far")
    if view.now_s:
        parts.append(format_time(view.now_s))
    return Text.from_markup(" · ".join(parts))


#: narrower terminals get each leg's node and engine id on lines under the table
WIDE_COLUMNS = 110


def summary_table(book: JobBook, job: JobRecord, *, wide: bool = True) -> Table:
    """The job's legs: site, how each ended, steps (restored → reached), times, and the job's
    totals; with ``wide``, each leg's node and engine id too (see :func:`leg_places`); its
    title is :func:`summary_title`."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    columns = ["leg", "site", "status", "steps", "started UTC", "ended UTC"]
    for column in columns + (["node", "id"] if wide else []):
        table.add_column(column, overflow="fold", no_wrap=column in ("status", "steps"))
    for leg in book.legs(job.name):
        cells = [str(leg.leg), leg.site, leg.status.value, _span(leg), _time(leg.started_at),
                 _time(leg.ended_at)]  # fmt: skip
        if wide:
            cells += [leg.node or leg.host or "—", leg.external_id or "—"]
        table.add_row(*cells)
    totals = book.totals(job.name)
    energy_j, carbon_g = totals.energy_j, totals.carbon_g
    moved = sum(1 for t in book.transfers(job.name) if t.status is TransferStatus.DONE)
    table.caption = (
        f"{job.moves} moves ({moved} transfers), {job.pauses} pauses, {job.preemptions} "
        f"preemptions, {job.crashes} crashes; energy "
        f"{'—' if energy_j is None else f'{energy_j / 3.6e6:.4f} kWh'}, carbon "
        f"{'—' if carbon_g is None else f'{carbon_g:.2f} g'}"
    )
    table.caption_justify = "left"
    return table


def summary_title(job: JobRecord) -> str:
    """``job NAME: STATUS — MESSAGE`` (one status word: "cancelled after step 672")."""
    status, said = job.status.value, job.message
    return f"job {job.name}: " + (
        said if said.startswith(status) else status + (f" — {said}" if said else "")
    )


def leg_places(book: JobBook, job: JobRecord) -> list[str]:
    """One line per leg: where it ran (node or host) and its engine's id."""
    return [
        f"leg {leg.leg}: {leg.executor} {leg.external_id or '—'} on {leg.node or leg.host or '—'}"
        for leg in book.legs(job.name)
    ]


def print_summary(book: JobBook, job: JobRecord) -> None:
    """The summary table, fitted to the terminal (never a name cut)."""
    wide = console.width >= WIDE_COLUMNS
    console.print(summary_title(job), highlight=False, markup=False)  # a line: names unbroken
    console.print(summary_table(book, job, wide=wide))
    if not wide:
        for line in leg_places(book, job):
            console.print(line, highlight=False, overflow="fold")


def _span(leg: Any) -> str:
    """Steps of a leg: the step its worker restored → the last it reached (``…``: runs on)."""
    start = "?" if leg.start_step is None else str(leg.start_step)
    if leg.end_step is not None:
        return f"{start}→{leg.end_step}"
    return f"{start}→…" if leg.status.value == "running" else f"{start}→?"


def validate_command(job_file: JobFile) -> None:
    """Check a job file and say what running it would do (nothing is started or written)."""
    from caftm.jobs.validate import describe_job

    spec = load_job(job_file)
    lines = describe_job(spec)
    table = Table(title=f"job {spec.name}: valid", title_justify="left", show_header=True)
    for column in ("site", "zone", "intensity now", "store"):
        table.add_column(column)
    for row in lines.sites:
        table.add_row(*row)
    console.print(table)
    for line in lines.notes:
        console.print(line, highlight=False)


def _target(job: str | None, db: str | None) -> tuple[Path | str, str | None]:
    """The ledger and job name a command means: ``job`` is a name, or a job file whose
    ``ledger.path`` (and name) it uses; ``--db`` (a path or a postgresql:// URL) wins over both."""
    given = ledger_location(db) if db is not None else None
    if job is not None and (job.endswith((".yaml", ".yml")) or Path(job).is_file()):
        spec = load_job(Path(job))
        return (given if given is not None else spec.ledger_path), spec.name
    return (given if given is not None else default_ledger_path()), job


def _open(path: Path | str, *, read_only: bool = False) -> Ledger:
    if ledger_missing(path):
        raise ConfigError(
            f"no ledger at {path}; give the job file (its ledger.path is used) or --db, "
            "or start the job with `caftm run JOB.yaml`"
        )
    return Ledger(path, read_only=read_only)


def _time(value: Any) -> str:
    return "—" if value is None else value.strftime("%m-%d %H:%M")


def jobs_command(
    job_file: Annotated[
        str | None, typer.Argument(help="A job's YAML: list the jobs of its ledger.path.")
    ] = None,
    db: DbOption = None,
) -> None:
    """List the jobs in the ledger, newest first."""
    path, _ = _target(job_file, db)
    with _open(path) as ledger:
        ledger.reap_dead_runs()
        book = JobBook(ledger)
        book.reap_dead_legs()
        jobs = book.jobs()
        table = Table(title=f"jobs in {ledger.shown}", title_justify="left", box=box.SIMPLE_HEAD,
                      pad_edge=False, collapse_padding=True)  # fmt: skip
        longest = max((len(job.name) for job in jobs), default=3)
        table.add_column("job", overflow="fold", min_width=min(longest, 16))
        table.add_column("status", overflow="fold", max_width=console.width // 6)
        table.add_column("site", overflow="fold")
        for column in ("leg", "step", "moves", "pauses"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_column("updated UTC", no_wrap=True)
        for job in jobs:
            table.add_row(
                job.name, _status_text(job), job.site, str(job.leg), str(job.step),
                str(job.moves), str(job.pauses), _time(job.updated_at),
            )  # fmt: skip
        console.print(table)


def _status_text(job: JobRecord) -> str:
    """The stored status, or what it means when its supervisor is gone."""
    from caftm.ledger.store import pid_alive

    if job.status.finished or job.supervisor_pid is None:
        return job.status.value if job.status.finished else f"{job.status.value} (unsupervised)"
    alive = pid_alive(job.supervisor_pid)
    return job.status.value if alive else f"{job.status.value} (supervisor gone)"


def status_command(job: JobArgument, db: DbOption = None) -> None:
    """One job: where it is, its legs (with their executor ids and nodes) and transfers."""
    path, name = _target(job, db)
    assert name is not None
    with _open(path) as ledger:
        book = JobBook(ledger)
        record = book.get(name)
        book.reap_dead_legs()
        print_summary(book, record)
        if record.pause_until is not None:
            console.print(f"paused until {_time(record.pause_until)} UTC")
        plan = ledger.latest_plan(job=name)
        if plan is not None:
            from caftm.control.planner import describe_record

            console.print(f"plan: {describe_record(plan)}", highlight=False)
        for t in book.transfers(name):
            size = "—" if t.bytes is None else f"{t.bytes / 1e6:.1f} MB"
            secs = "—" if t.seconds is None else f"{t.seconds:.1f} s"
            console.print(
                f"transfer {t.src_site} → {t.dst_site} (leg {t.leg}): {t.status}, {size} in "
                f"{secs}{': ' + t.message if t.message else ''}",
                highlight=False,
            )


def cancel_command(job: JobArgument, db: DbOption = None) -> None:
    """Stop a job: its worker checkpoints first, then the job is marked cancelled."""
    from caftm.jobs.cancel import cancel_job

    path, name = _target(job, db)
    assert name is not None
    with _open(path) as ledger:
        console.print(cancel_job(JobBook(ledger), name), highlight=False)
