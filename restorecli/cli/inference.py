"""``restore derain|deblur|denoise INPUT OUTPUT``: one command per task over the same engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from restorecli.cli.common import (
    DeviceOption,
    PrecisionOption,
    TileOption,
    TileOverlapOption,
    fail,
    reports_errors,
)

_HELP = {
    "derain": "Remove rain streaks from an image or a folder of images.",
    "deblur": "Remove motion (or, with a defocus model, defocus) blur from an image or a folder of images.",
    "denoise": "Remove noise from an image or a folder of images.",
}


def _make_command(command: str) -> Callable[..., None]:
    """Build the Typer command for one task; all three share options and behaviour."""

    @reports_errors
    def run(
        input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="An image file or a folder of images.")],
        output_dir: Annotated[Path, typer.Argument(metavar="OUTPUT", help="Folder for the results (same names).")],
        model: Annotated[
            str | None,
            typer.Option("--model", help="Zoo name or checkpoint file (default: restorecli-<command>)."),
        ] = None,
        weights: Annotated[
            Path | None, typer.Option("--weights", help="Explicit weight file for the zoo model.")
        ] = None,
        device: DeviceOption = "auto",
        tile: TileOption = None,
        tile_overlap: TileOverlapOption = 32,
        precision: PrecisionOption = "fp32",
        tlc: Annotated[
            bool | None,
            typer.Option("--tlc/--no-tlc", help="NAFNet test-time local converter (default: the entry's choice)."),
        ] = None,
        skip_existing: Annotated[
            bool, typer.Option("--skip-existing", help="Leave images whose output exists (resume a run).")
        ] = False,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        from restorecli import api
        from restorecli.engine.batch import restore_files
        from restorecli.images import list_images
        from restorecli.zoo import pretrained

        name = pretrained.model_for_command(command, model)
        inputs = list_images(input_path)
        descriptor = api.load_model(name, device, weights=weights, tlc=tlc, progress=not quiet)
        report = restore_files(
            descriptor,
            inputs,
            output_dir,
            tile=tile,
            tile_overlap=tile_overlap,
            precision=precision,
            skip_existing=skip_existing,
            progress=not quiet,
            fallback=device == "auto",
        )
        typer.echo(
            f"{descriptor.name} on {descriptor.device}: {report.succeeded} restored, {report.skipped} skipped, "
            f"{report.failed} failed in {report.seconds:.1f} s -> {output_dir}"
        )
        if report.failed:
            raise fail(f"{report.failed} of {len(inputs)} images failed")

    run.__doc__ = _HELP[command]
    run.__name__ = command
    return run


def register(app: typer.Typer) -> None:
    """Add ``restore derain``, ``restore deblur`` and ``restore denoise`` to the app."""
    for command in _HELP:
        app.command(command)(_make_command(command))
