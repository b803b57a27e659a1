"""``restore train``: run a training recipe, continue it, or export a run's weights and model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from restorecli.cli.common import JsonOption, fail, reports_errors

RecipeArgument = Annotated[
    Path | None,
    typer.Argument(
        help="Recipe file (TOML), e.g. recipes/denoise.toml. Paths inside it are relative to the working directory."
    ),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a recipe value, key.sub=value, typed as TOML (repeatable): --set optim.lr=5e-4. "
        "With --export it changes the run's recorded recipe before the final validation "
        "(--set model.pad_mode=reflect).",
    ),
]
IterationsOption = Annotated[int | None, typer.Option("--iterations", min=1, help="Override schedule.iterations.")]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Override output.dir (the run folder); with --export, where the weights and card go."),
]
ResumeOption = Annotated[
    bool,
    typer.Option(
        "--resume", help="Continue from the latest checkpoint in the run folder (starts fresh if it has none)."
    ),
]
DeviceOverride = Annotated[
    str | None, typer.Option("--device", help="Override runtime.device: auto, cpu, cuda, cuda:N or mps.")
]
PrecisionOverride = Annotated[str | None, typer.Option("--precision", help="Override runtime.precision: fp32 or bf16.")]
ThreadsOverride = Annotated[
    int | None, typer.Option("--threads", min=0, help="Override runtime.threads (torch CPU threads; 0 = one per core).")
]
WorkersOverride = Annotated[
    int | None, typer.Option("--workers", min=0, help="Override data.workers (DataLoader processes).")
]
MaxMinutesOption = Annotated[
    float | None,
    typer.Option(
        "--max-minutes", min=0.0, help="Stop with a checkpoint after this many minutes; continue later with --resume."
    ),
]
ExportOption = Annotated[
    Path | None,
    typer.Option("--export", help="Export RUN_DIR's latest checkpoint (EMA weights + model card) instead of training."),
]
DryRunOption = Annotated[bool, typer.Option("--dry-run", help="Print the resolved recipe (after overrides) and exit.")]
ProgressOption = Annotated[bool, typer.Option("--progress/--no-progress", help="Show the progress bar.")]


def _overrides(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


@reports_errors
def train(
    recipe: RecipeArgument = None,
    set_values: SetOption = None,
    iterations: IterationsOption = None,
    out: OutOption = None,
    resume: ResumeOption = False,
    device: DeviceOverride = None,
    precision: PrecisionOverride = None,
    workers: WorkersOverride = None,
    threads: ThreadsOverride = None,
    max_minutes: MaxMinutesOption = None,
    export: ExportOption = None,
    dry_run: DryRunOption = False,
    progress: ProgressOption = True,
    as_json: JsonOption = False,
) -> None:
    """Train a model from a recipe: checkpoints, validation, a JSONL log; exports weights + card at the end.

    Ctrl-C stops after the current step and saves a checkpoint; run again with --resume to continue.
    """
    if export is not None:
        from restorecli.train.export import export_run

        result = export_run(export, out_dir=out, device=device, overrides=set_values or ())
        _report(
            {"weights": str(result.weights), "card": str(result.card), "val": result.card_data.to_dict()["val"]},
            as_json,
        )
        return
    if recipe is None:
        raise fail("Expected a recipe file (or --export RUN_DIR), but got neither")
    from restorecli.train.loop import train as run_training
    from restorecli.train.recipe import load_recipe, recipe_to_dict

    settings = _overrides(
        **{
            "schedule.iterations": iterations,
            "output.dir": str(out) if out is not None else None,
            "runtime.device": device,
            "runtime.precision": precision,
            "data.workers": workers,
            "runtime.threads": threads,
        }
    )
    resolved = load_recipe(recipe, set_values or (), settings)
    if dry_run:
        typer.echo(json.dumps(recipe_to_dict(resolved), indent=2))
        return
    time_limit = max_minutes * 60.0 if max_minutes is not None else None
    result = run_training(resolved, resume=resume, progress=progress, time_limit_s=time_limit)
    summary: dict[str, Any] = {
        "run_dir": str(result.run_dir),
        "iteration": result.iteration,
        "of": resolved.schedule.iterations,
        "stopped": result.stopped,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "seconds_per_iteration": result.seconds_per_iteration,
    }
    if result.export is not None:
        summary.update(
            weights=str(result.export.weights),
            card=str(result.export.card),
            val=result.export.card_data.to_dict()["val"],
        )
    elif result.val is not None:
        summary["val"] = {"psnr": result.val.psnr, "ssim": result.val.ssim, "input_psnr": result.val.input_psnr}
    _report(summary, as_json)


def _report(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for key, value in summary.items():
        if key == "val" and value:
            value = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.3f}"
        typer.echo(f"{key:>22}: {value}")


def register(app: typer.Typer) -> None:
    """Add ``restore train`` to the app."""
    app.command("train")(train)
