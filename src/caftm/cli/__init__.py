"""The ``caftm`` command. It parses, calls the library and renders with rich; no logic lives here.

Each command group lives in its own module and is registered below. Any :class:`CaftmError`
becomes one error line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer

from caftm.cli._common import run_app

app = typer.Typer(
    name="caftm",
    help="Carbon-aware, fault-tolerant training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # Imported here so each group's imports stay off the others' start-up path.
    from caftm.cli import demo, signals

    signals.register(app)
    demo.register(app)
    for name in ("gpu", "runs", "profiles", "jobs", "sim", "dashboard"):
        try:
            module = __import__(f"caftm.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != f"caftm.cli.{name}":
                raise
            continue
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``caftm`` script."""
    sys.exit(run_app(app, argv))
