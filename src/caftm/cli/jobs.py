"""``caftm run``, ``jobs``, ``status``, ``cancel`` and ``validate``: the job supervisor's commands.

They parse, call :mod:`caftm.jobs` and render with rich. ``caftm run`` shows a live line per job
(site, state, step/total, GPU setting, intensity, carbon so far); events that change the job's
fate (a move, a pause, a preemption, a crash) are printed above it as they happen.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
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
)

DbOption = Annotated[
    Path | None,
    typer.Option("--db", help="Ledger file (default: $CAFTM_LEDGER or ~/.local/share/caftm)."),
]
JobFile = Annotated[Path, typer.Argument(help="The job's YAML (see examples/job.yaml).")]

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
) -> None:
    """Run a job to its end: start, move, pause and restart its worker as caftm decides."""
    from caftm.jobs.supervisor import Supervisor
    from caftm.jobs.validate import check_job

    spec = load_job(job_file)
    check_job(spec)
    if quiet or not console.is_terminal:
        supervisor = Supervisor(spec)
        job = _supervise(supervisor)
    else:
        with Live(Text(""), console=console, refresh_per_second=4, transient=True) as live:
            supervisor = Supervisor(spec, on_update=lambda view: live.update(progress_line(view)))
            job = _supervise(supervisor)
    console.print(summary_table(JobBook(Ledger(spec.ledger_path)), job))
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


def summary_table(book: JobBook, job: JobRecord) -> Table:
    """The job's legs: site, how each ended, steps, and the job's totals."""
    table = Table(title=f"job {job.name}: {job.status.value} — {job.message}", title_justify="left")
    for column in ("leg", "site", "status", "steps", "started", "ended", "node", "id"):
        table.add_column(column, overflow="fold")
    for leg in book.legs(job.name):
        span = f"{leg.start_step or 0}→{leg.end_step}" if leg.end_step is not None else "—"
        table.add_row(
            str(leg.leg), leg.site, leg.status.value, span, _time(leg.started_at),
            _time(leg.ended_at), leg.node or leg.host or "—", leg.external_id or "—",
        )  # fmt: skip
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


def _open(db: Path | None, *, read_only: bool = False) -> Ledger:
    path = db if db is not None else default_ledger_path()
    if not path.exists():
        raise ConfigError(f"no ledger at {path}; `caftm run` creates it (or pass --db)")
    return Ledger(path, read_only=read_only)


def _time(value: Any) -> str:
    return "—" if value is None else value.strftime("%m-%d %H:%M:%S")


def jobs_command(db: DbOption = None) -> None:
    """List the jobs in the ledger, newest first."""
    with _open(db) as ledger:
        ledger.reap_dead_runs()
        book = JobBook(ledger)
        book.reap_dead_legs()
        table = Table(title=f"jobs in {ledger.path}")
        for column in ("job", "status", "site", "leg", "step", "moves", "pauses", "updated (UTC)"):
            table.add_column(column)
        for job in book.jobs():
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


def status_command(job: Annotated[str, typer.Argument(help="The job's name.")],
                   db: DbOption = None) -> None:  # fmt: skip
    """One job: where it is, its legs (with their executor ids and nodes) and transfers."""
    with _open(db) as ledger:
        book = JobBook(ledger)
        record = book.get(job)
        book.reap_dead_legs()
        console.print(summary_table(book, record))
        if record.pause_until is not None:
            console.print(f"paused until {_time(record.pause_until)} UTC")
        plan = ledger.latest_plan(job=job)
        if plan is not None:
            from caftm.control.planner import describe_record

            console.print(f"plan: {describe_record(plan)}", highlight=False)
        for t in book.transfers(job):
            size = "—" if t.bytes is None else f"{t.bytes / 1e6:.1f} MB"
            secs = "—" if t.seconds is None else f"{t.seconds:.1f} s"
            console.print(
                f"transfer {t.src_site} → {t.dst_site} (leg {t.leg}): {t.status}, {size} in "
                f"{secs}{': ' + t.message if t.message else ''}",
                highlight=False,
            )


def cancel_command(job: Annotated[str, typer.Argument(help="The job's name.")],
                   db: DbOption = None) -> None:  # fmt: skip
    """Stop a job: its worker checkpoints first, then the job is marked cancelled."""
    from caftm.jobs.cancel import cancel_job

    with _open(db) as ledger:
        console.print(cancel_job(JobBook(ledger), job), highlight=False)
