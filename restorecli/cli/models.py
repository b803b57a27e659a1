"""``restore models``: the zoo as a table, with which weight files are present locally."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from restorecli.cli.common import JsonOption, format_table, reports_errors


@reports_errors
def models(
    task: Annotated[str | None, typer.Option("--task", help="Only entries for this task (e.g. derain).")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the model zoo: architecture, task, local availability, licence and score."""
    from restorecli.errors import ConfigError
    from restorecli.zoo import download, pretrained
    from restorecli.zoo.card import read_card

    tasks = sorted({entry.task for entry in pretrained.ENTRIES if entry.task})
    if task is not None and task not in tasks:
        raise ConfigError(f"Expected --task among {', '.join(tasks)}, but got {task!r}")
    rows = []
    for entry in pretrained.ENTRIES:
        if task is not None and entry.task != task:
            continue
        local = download.find_local(entry.filename)
        card = read_card(local) if local is not None else None
        rows.append(
            {
                "name": entry.name,
                "task": entry.task,
                "arch": entry.arch + (f" +{entry.variant.upper()}" if entry.variant else ""),
                "config": entry.config if isinstance(entry.config, str) else "custom",
                "default": entry.default_for or "",
                "local": str(local) if local else "-",
                "source": entry.url or "bundled",
                "license": entry.license,
                "score": card.measured_score() if card else entry.paper_score,
                "protocol": entry.protocol or "-",
                "benchmarks": [asdict(row) for row in card.benchmarks] if card else [],
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("No entries.")
        return
    columns = ["name", "task", "arch", "config", "default", "local", "license", "score", "protocol"]
    table = [[row[c] if c != "local" else ("yes" if row[c] != "-" else "-") for c in columns] for row in rows]
    typer.echo(format_table(columns, table))
    typer.echo("score: measured (model card) for restorecli-*, else as the paper reports it.")
    typer.echo("protocol: how that score is measured; `restore eval --protocol NAME` applies it.")
    typer.echo("--json also lists each card's benchmark table (e.g. every noise level or rain model).")
    typer.echo(f"\nWeights are looked up in: {', '.join(str(d) for d in download.search_dirs())}")


def register(app: typer.Typer) -> None:
    """Add ``restore models`` to the app."""
    app.command("models")(models)
