"""``restore inspect FILE``: what a weights file is, before anything runs on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from restorecli.cli.common import JsonOption, format_table, reports_errors


@reports_errors
def inspect_weights(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="A .pth, .pt or .safetensors weights file.")],
    as_json: JsonOption = False,
) -> None:
    """Print a weights file's architecture, task, scale, channels, size rule, parameters and licence."""
    from restorecli.zoo.loader import inspect_file

    facts = inspect_file(path)
    if as_json:
        typer.echo(json.dumps(facts, indent=2, default=str))
        return
    rows = [[key, json.dumps(value) if isinstance(value, (dict, list)) else value] for key, value in facts.items()]
    typer.echo(format_table(None, rows))


def register(app: typer.Typer) -> None:
    """Add ``restore inspect`` to the app."""
    app.command("inspect")(inspect_weights)
