"""The ``restore`` program: registers each command group's module on one Typer app."""

from __future__ import annotations

from typing import Annotated

import typer

from restorecli.cli import datasets, degrade, evaluate, export, inference, inspection, models, profiler, training
from restorecli.cli.common import show_library_messages

app = typer.Typer(
    name="restore",
    help="Image restoration with Restormer and NAFNet: inference, evaluation, dataset tools, profiling, training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

inference.register(app)
models.register(app)
datasets.register(app)
degrade.register(app)
profiler.register(app)
evaluate.register(app)
training.register(app)
inspection.register(app)
export.register(app)


def _print_version(requested: bool) -> None:
    if requested:
        from restorecli import __version__

        typer.echo(f"restorecli {__version__}")
        raise typer.Exit()


@app.callback()
def _setup(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Image restoration with Restormer and NAFNet: inference, evaluation, dataset tools, profiling, training."""
    show_library_messages()


def main() -> None:
    """Console-script entry point."""
    app()
