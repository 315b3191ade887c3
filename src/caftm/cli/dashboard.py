"""``caftm dashboard`` (a live page and ``/metrics``) and ``caftm report JOB|RUN`` (one HTML file).

Both open the ledger read-only (``--db``, else ``$CAFTM_LEDGER``, else
~/.local/share/caftm/ledger.sqlite): they never write to it and never lock out a running job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from caftm.cli._common import console
from caftm.errors import ConfigError
from caftm.ledger import default_ledger_path, ledger_location, ledger_missing

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Ledger file or postgresql:// URL (default: $CAFTM_LEDGER or ~/.local/share/caftm).",
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``dashboard`` and ``report`` to ``app``."""
    app.command("dashboard")(dashboard_command)
    app.command("report")(report_command)


def _ledger_path(db: str | None) -> Path | str:
    path = ledger_location(db) if db is not None else default_ledger_path()
    if ledger_missing(path) or (isinstance(path, Path) and not path.is_file()):
        raise ConfigError(
            f"no ledger at {path}; a run with a ledger creates it (or pass --db / set CAFTM_LEDGER)"
        )
    return path


def dashboard_command(
    db: DbOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on (loopback needs no token).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free one).")] = 8050,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File holding the token the page and /metrics require (default: "
            "$CAFTM_DASHBOARD_TOKEN); needed off loopback. Never on the command line: ps shows it.",
        ),
    ] = None,
    poll_ms: Annotated[
        int, typer.Option("--poll-ms", help="How often the page asks for news (ms).")
    ] = 1000,
) -> None:
    """Serve a live page of the ledger's jobs (and /metrics for Prometheus) until Ctrl-C."""
    path = _ledger_path(db)
    try:
        from caftm.dashboard import DashboardServer, ServeOptions, read_token_file
    except ModuleNotFoundError as e:
        raise ConfigError(f"the dashboard needs {e.name}: pip install 'caftm[dashboard]'") from None
    token = read_token_file(token_file) if token_file is not None else None
    server = DashboardServer(
        ServeOptions(db=path, host=host, port=port, token=token, poll_ms=poll_ms)
    )
    console.print(
        f"caftm dashboard on {server.url} (metrics: {server.url}metrics) of {path}; "
        "Ctrl-C stops it",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    server.serve()


def report_command(
    target: Annotated[str, typer.Argument(help="A job's name or a run id (or its start).")],
    db: DbOption = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
) -> None:
    """Write one self-contained HTML report (figures inline, opens offline) of a job or run."""
    from caftm.ledger import Ledger
    from caftm.report.build import ledger_report
    from caftm.report.html import write_report

    with Ledger(_ledger_path(db), read_only=True) as ledger:
        report = ledger_report(ledger, target)
    path = write_report(report, out)
    labels = f" [{', '.join(report.labels)}]" if report.labels else ""
    console.print(f"wrote {path} ({report.title}{labels})", highlight=False)
