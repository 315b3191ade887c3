"""Shared CLI plumbing: the rich consoles and the one place errors become exit code 2."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from caftm.errors import CaftmError

console = Console()
err_console = Console(stderr=True)

EXIT_BAD_INPUT = 2


def fail(message: str) -> typer.Exit:
    """Print one error line and return the Exit to raise (exit code 2)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_BAD_INPUT)


def run_app(app: typer.Typer, argv: list[str] | None = None) -> int:
    """Run ``app``; caftm errors and usage errors become one line and exit code 2.

    typer (≥ 0.29) carries its own copy of click: its exceptions are caught through typer's public
    names (``Exit``, ``Abort``, ``TyperException``), so the ``click`` package is never needed.
    """
    command = typer.main.get_command(app)
    try:
        code = command.main(
            args=argv if argv is not None else sys.argv[1:],
            prog_name=app.info.name or "caftm",
            standalone_mode=False,
        )
    except CaftmError as e:
        fail(str(e))
        return EXIT_BAD_INPUT
    except typer.Exit as e:
        return int(e.exit_code)
    except typer.TyperException as e:  # unknown command or option, missing argument, bare group
        return _usage_error(e)
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    # without standalone mode an Exit raised inside a command comes back as its exit code
    return code if isinstance(code, int) and not isinstance(code, bool) else 0


def _usage_error(error: typer.TyperException) -> int:
    """Print a usage error as one line naming the command's --help; a bare group prints its help."""
    ctx = getattr(error, "ctx", None)
    format_message = getattr(error, "format_message", None)
    message = format_message() if callable(format_message) else str(error)
    if type(error).__name__ == "NoArgsIsHelpError":  # a bare group; as typer itself tells it
        if message.strip():  # typer's rich help is printed as it is built and leaves no text
            console.print(message, highlight=False, markup=False)
        return EXIT_BAD_INPUT
    where = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
    fail(f"{message.rstrip('.')}{where}")
    return int(getattr(error, "exit_code", EXIT_BAD_INPUT))
