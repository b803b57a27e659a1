"""``restore derain|deblur|denoise INPUT OUTPUT``: one command per task over the same engine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from restorecli.cli.common import (
    DeviceOption,
    PrecisionOption,
    TileOption,
    TileOverlapOption,
    job_exit,
    reports_errors,
)

if TYPE_CHECKING:
    from restorecli.engine.batch import JobReport
    from restorecli.zoo.descriptor import ModelDescriptor

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
        from restorecli.engine import distributed
        from restorecli.engine.batch import restore_job
        from restorecli.errors import RestoreError
        from restorecli.zoo import pretrained

        with distributed.session(device=device) as session:

            def load(rank_device: str) -> ModelDescriptor:
                name = pretrained.model_for_command(command, model)
                return api.load_model(
                    name, rank_device, weights=weights, tlc=tlc, progress=not quiet and session.is_main
                )

            try:
                job = restore_job(
                    load,
                    input_path,
                    output_dir,
                    device=device,
                    session=session,
                    tile=tile,
                    tile_overlap=tile_overlap,
                    precision=precision,
                    skip_existing=skip_existing,
                    progress=not quiet,
                    fallback=device == "auto",
                )
            except RestoreError as exc:
                failure: str | None = str(exc)
            else:
                if session.is_main:
                    typer.echo(_summary(job, output_dir))
                failure = f"{job.batch.failed} of {job.total} images failed" if job.batch.failed else None
            # Every rank exits 1 if any rank failed; rank 0 alone says why, inside the session (see its docstring).
            ending = job_exit(failure, session.is_main)
        if ending is not None:
            raise ending

    run.__doc__ = _HELP[command]
    run.__name__ = command
    return run


def _summary(job: JobReport, output_dir: Path) -> str:
    """One line for the whole job, e.g. ``m on 2 processes (cuda:0, cuda:1): 8 restored, 0 skipped, ...``."""
    devices = job.devices
    where = devices[0] if len(devices) == 1 else f"{len(devices)} processes ({', '.join(dict.fromkeys(devices))})"
    report = job.batch
    return (
        f"{job.model} on {where}: {report.succeeded} restored, {report.skipped} skipped, "
        f"{report.failed} failed in {report.seconds:.1f} s -> {output_dir}"
    )


def register(app: typer.Typer) -> None:
    """Add ``restore derain``, ``restore deblur`` and ``restore denoise`` to the app."""
    for command in _HELP:
        app.command(command)(_make_command(command))
