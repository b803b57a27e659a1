"""``restore derain|deblur|denoise|upscale INPUT OUTPUT``: one command per task over the same engine."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from restorecli.cli.common import (
    DeviceOption,
    FollowSymlinksOption,
    MaxMemoryOption,
    MaxPixelsOption,
    PrecisionOption,
    QuietOption,
    TileBatchOption,
    TileOption,
    TileOverlapOption,
    TlcOption,
    apply_input_policy,
    job_exit,
    reports_errors,
    run_options,
    tlc_variant,
)
from restorecli.engine.options import DEFAULT_JPEG_QUALITY, DEFAULT_TILE_OVERLAP, OutputFormat

if TYPE_CHECKING:
    from restorecli.engine.batch import JobReport
    from restorecli.engine.files import InputFiles
    from restorecli.zoo.descriptor import ModelDescriptor

_HELP = {
    "derain": "Remove rain streaks from an image or a folder of images.",
    "deblur": "Remove motion (or, with a defocus model, defocus) blur from an image or a folder of images.",
    "denoise": "Remove noise from an image or a folder of images.",
    "upscale": "Enlarge an image or a folder of images (super-resolution: x2, x3 or x4, by the model).",
}
# Options that only some commands take; each command's Typer signature leaves out the others.
_ONLY_FOR = {"tlc": ("derain", "deblur", "denoise"), "scale": ("upscale",)}


def _make_command(command: str) -> Callable[..., None]:
    """Build the Typer command for one task; all share options and behaviour (see :data:`_ONLY_FOR`)."""

    @reports_errors
    def run(
        input_path: Annotated[
            Path,
            typer.Argument(
                metavar="INPUT",
                help="An image or video (.mp4 .mov .mkv .webm .avi) file, or a folder of them.",
            ),
        ],
        output_dir: Annotated[
            Path, typer.Argument(metavar="OUTPUT", help="Folder for the results (same names unless --ext/--suffix).")
        ],
        model: Annotated[
            str | None,
            typer.Option("--model", help="Zoo name or checkpoint file (default: restorecli-<command>)."),
        ] = None,
        weights: Annotated[
            Path | None,
            typer.Option(
                "--weights",
                help="Weight file: for the --model zoo entry (its config), or alone (config inferred, as --model FILE).",
            ),
        ] = None,
        scale: Annotated[
            int | None,
            typer.Option(
                "--scale",
                min=1,
                help="Upscale factor: picks the zoo's model of that scale, or must match --model's scale.",
            ),
        ] = None,
        device: DeviceOption = "auto",
        tile: TileOption = None,
        tile_overlap: TileOverlapOption = DEFAULT_TILE_OVERLAP,
        tile_batch: TileBatchOption = None,
        precision: PrecisionOption = "fp32",
        max_memory: MaxMemoryOption = None,
        tlc: TlcOption = None,
        skip_existing: Annotated[
            bool, typer.Option("--skip-existing", help="Leave images and videos whose output exists (resume a run).")
        ] = False,
        recursive: Annotated[
            bool,
            typer.Option("--recursive", help="Also restore the files of sub-folders, mirroring the tree under OUTPUT."),
        ] = False,
        ext: Annotated[
            OutputFormat,
            typer.Option(
                "--ext",
                help="Image format of the outputs: same (a JPEG stays JPEG), png (lossless: spares a JPEG input a "
                "second lossy pass), jpg (8-bit, no alpha; --jpeg-quality) or webp (lossless, 8-bit). "
                "Videos keep their container.",
            ),
        ] = "same",
        jpeg_quality: Annotated[
            int, typer.Option("--jpeg-quality", min=0, max=100, help="Quality of JPEG outputs, 0-100.")
        ] = DEFAULT_JPEG_QUALITY,
        suffix: Annotated[
            str,
            typer.Option("--suffix", metavar="TEXT", help="Name outputs name_TEXT.ext (default: the input's name)."),
        ] = "",
        video_codec: Annotated[
            str | None,
            typer.Option(
                "--video-codec",
                help="Video encoder, e.g. libx264, libx265, libvpx-vp9, mpeg4 (default: libx264; "
                "libvpx-vp9 for .webm, mpeg4 for .avi). Audio and subtitles are copied as they are.",
            ),
        ] = None,
        crf: Annotated[
            int | None,
            typer.Option(
                "--crf",
                min=0,
                help="Video quality, lower is better: 0-51 for libx264/libx265, 0-63 for libvpx-vp9 (default 18).",
            ),
        ] = None,
        frame_batch: Annotated[
            int | None,
            typer.Option(
                "--frame-batch",
                min=1,
                help="Video frames per model call (default: 1 on the CPU, 8 on a GPU).",
            ),
        ] = None,
        quiet: QuietOption = False,
        max_pixels: MaxPixelsOption = None,
        follow_symlinks: FollowSymlinksOption = False,
    ) -> None:
        from restorecli import api, distributed
        from restorecli.engine.batch import restore_job
        from restorecli.engine.options import OutputOptions
        from restorecli.errors import RestoreError
        from restorecli.video import VideoOptions
        from restorecli.zoo import pretrained

        apply_input_policy(max_pixels, follow_symlinks)
        with distributed.session(device=device) as session:

            def load(rank_device: str) -> ModelDescriptor:
                # --weights alone is a checkpoint to read as --model FILE is (config from its card or keys);
                # with --model, the zoo entry's config is used and a mismatch names the entry the file fits.
                if model is None and weights is not None:
                    name, entry_weights = str(weights), None
                else:
                    name, entry_weights = pretrained.model_for_command(command, model, scale), weights
                loaded = api.load_model(
                    name,
                    rank_device,
                    weights=entry_weights,
                    variant=tlc_variant(tlc),
                    progress=not quiet and session.is_main,
                )
                pretrained.check_scale(loaded.name, loaded.scale, scale)
                return loaded

            try:
                options = run_options(
                    device,
                    tile=tile,
                    tile_overlap=tile_overlap,
                    tile_batch=tile_batch,
                    precision=precision,
                    max_memory=max_memory,
                )
                job = restore_job(
                    load,
                    input_path,
                    output_dir,
                    options,
                    device=device,
                    session=session,
                    recursive=recursive,
                    naming=OutputOptions(ext=ext, suffix=suffix, jpeg_quality=jpeg_quality),
                    video=VideoOptions(codec=video_codec, crf=crf, batch=frame_batch),
                    skip_existing=skip_existing,
                    progress=not quiet,
                )
            except RestoreError as exc:
                failure: str | None = str(exc)
            else:
                if session.is_main:
                    typer.echo(_summary(job, output_dir))
                kinds = "images and videos" if job.inputs.videos else "images"
                failure = f"{job.batch.failed} of {job.total} {kinds} failed" if job.batch.failed else None
            # Every rank exits 1 if any rank failed; rank 0 alone says why, inside the session (see its docstring).
            ending = job_exit(failure, session.is_main)
        if ending is not None:
            raise ending

    run.__doc__ = _HELP[command]
    run.__name__ = command
    signature = inspect.signature(run, eval_str=True)  # Typer needs the annotations themselves
    kept = [p for p in signature.parameters.values() if command in _ONLY_FOR.get(p.name, (command,))]
    run.__signature__ = signature.replace(parameters=kept)  # type: ignore[attr-defined]  # read by Typer
    return run


def _summary(job: JobReport, output_dir: Path) -> str:
    """One line for the whole job, e.g. ``m on 2 processes (cuda:0, cuda:1): 8 restored, 0 skipped, ...``."""
    devices = job.devices
    where = devices[0] if len(devices) == 1 else f"{len(devices)} processes ({', '.join(dict.fromkeys(devices))})"
    report = job.batch
    videos = f" ({_count(report.videos, 'video')}, {_count(report.frames, 'frame')})" if report.videos else ""
    line = (
        f"{job.model} on {where}: {report.succeeded} restored{videos}, {report.skipped} skipped, "
        f"{report.failed} failed in {report.seconds:.1f} s -> {output_dir}"
    )
    found = job.inputs
    if found.others:
        line += f"; {_count(len(found.others), 'other file')} not restored: {_names(found, found.others)}"
    if found.unsearched:
        why = "symbolic links are not followed" if found.recursive else "--recursive restores them"
        line += (
            f"; {_count(len(found.unsearched), 'sub-folder')} not searched ({why}): {_names(found, found.unsearched)}"
        )
    return line


_MOST_NAMES = 10  # the summary stays one readable line for a folder of thousands of other files


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _names(found: InputFiles, paths: tuple[Path, ...]) -> str:
    """Up to :data:`_MOST_NAMES` paths below the input folder, escaped for one line, then how many more."""
    from restorecli.errors import display_path

    shown = ", ".join(display_path(found.relative(path)) for path in paths[:_MOST_NAMES])
    return shown + (f" and {len(paths) - _MOST_NAMES} more" if len(paths) > _MOST_NAMES else "")


def register(app: typer.Typer) -> None:
    """Add ``restore derain``, ``restore deblur``, ``restore denoise`` and ``restore upscale`` to the app."""
    for command in _HELP:
        app.command(command)(_make_command(command))
