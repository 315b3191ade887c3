"""Shared CLI plumbing: the rich consoles and the one place errors become exit code 2."""

from __future__ import annotations

import sys

import click
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
    """Run ``app``; translate caftm errors into one line and exit code 2."""
    command = typer.main.get_command(app)
    try:
        command.main(args=argv if argv is not None else sys.argv[1:], standalone_mode=False)
    except CaftmError as e:
        fail(str(e))
        return EXIT_BAD_INPUT
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.ClickException as e:
        e.show()
        return EXIT_BAD_INPUT
    except click.exceptions.Abort:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted")
        return 130
    return 0
