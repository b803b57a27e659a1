"""``restore degrade noise|blur|rain|downscale INPUT OUTPUT``: degraded copies of clean images, reproducible by ``--seed``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from restorecli.cli.common import (
    EXIT_FAILURE,
    FollowSymlinksOption,
    JsonOption,
    MaxPixelsOption,
    QuietOption,
    apply_input_policy,
    reports_errors,
)
from restorecli.errors import display_path, escape_text

if TYPE_CHECKING:
    from restorecli.data.degradations import DegradeSummary

Range = tuple[float, float]

degrade_app = typer.Typer(
    help=(
        "Write degraded copies of clean images (Gaussian noise, motion blur, rain streaks, bicubic downscaling) "
        "to build training and evaluation sets. Outputs keep the input file names and bit depth (JPEG inputs "
        "become PNG)."
    ),
    no_args_is_help=True,
)

InputArgument = Annotated[Path, typer.Argument(help="A clean image file or a folder of images (not recursive).")]
OutputArgument = Annotated[
    Path,
    typer.Argument(help="Output folder (created as needed), or an output file name when INPUT is a single file."),
]
SeedOption = Annotated[
    int, typer.Option("--seed", min=0, help="Base seed; each image's randomness is derived from it and the file name.")
]
FormatOption = Annotated[
    Literal["auto", "png", "npy"],
    typer.Option(
        "--format",
        help="auto: each input's format and bit depth (JPEG becomes PNG); png; npy: float32 arrays in [0, 1].",
    ),
]


def _run(
    kind: str, input_path: Path, output: Path, params: Any, seed: int, as_json: bool, quiet: bool, **options: Any
) -> None:
    from restorecli.data.degradations import degrade_files

    progress = not (as_json or quiet)
    summary = degrade_files(kind, input_path, output, params, seed, progress=progress, **options)  # type: ignore[arg-type]
    _report(summary, as_json)


def _report(summary: DegradeSummary, as_json: bool) -> None:
    """Print the summary (table line or JSON), list skipped files on stderr, exit 1 if any failed."""
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        typer.echo(
            f"Wrote {len(summary.written)} {summary.kind} image(s) to {summary.output} "
            f"in {summary.seconds:.1f} s{_seed_note(summary.settings)}."
        )
    for path, message in summary.failed:
        typer.echo(f"Warning: Skipped {display_path(path)}: {escape_text(message)}", err=True)
    if summary.failed:
        typer.echo(f"Error: {len(summary.failed)} file(s) could not be degraded", err=True)
        raise typer.Exit(EXIT_FAILURE)


@reports_errors
def noise(
    input_path: InputArgument,
    output: OutputArgument,
    sigma: Annotated[float, typer.Option("--sigma", min=0, help="Noise standard deviation on the 0-255 scale.")] = 25.0,
    seed: SeedOption = 0,
    seeding: Annotated[
        Literal["benchmark", "per-file"],
        typer.Option(
            "--seeding",
            help=(
                "benchmark: np.random.seed(SEED) reset for every image and np.random.normal noise added to the "
                "float image, as the denoising papers' test scripts do; per-file: independent noise per image."
            ),
        ),
    ] = "benchmark",
    clip: Annotated[
        bool, typer.Option("--clip/--no-clip", help="Clip the noisy image to [0, 1]; --no-clip needs --format npy.")
    ] = True,
    quantize: Annotated[
        bool,
        typer.Option(
            "--quantize/--no-quantize", help="Round to the image's bit depth; --no-quantize needs --format npy."
        ),
    ] = True,
    output_format: FormatOption = "auto",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Additive white Gaussian noise; by default the papers' protocol, rounded and clipped to the image's bit depth."""
    from restorecli.data.degradations import NoiseParams

    params = NoiseParams(sigma=sigma, clip=clip, quantize=quantize)
    _run("noise", input_path, output, params, seed, as_json, quiet, noise_seeding=seeding, output_format=output_format)


@reports_errors
def blur(
    input_path: InputArgument,
    output: OutputArgument,
    kernel: Annotated[
        Literal["linear", "shake", "mixed"],
        typer.Option(
            "--kernel", help="linear motion, camera-shake trajectories (Boracchi & Foi 2012), or a 50/50 mix."
        ),
    ] = "mixed",
    kernel_size: Annotated[
        tuple[int, int] | None,
        typer.Option("--kernel-size", help="Smallest and largest odd kernel size in pixels (default 9 31)."),
    ] = None,
    length: Annotated[
        Range | None,
        typer.Option("--length", help="Path length as a fraction of the kernel span, low high (default 0.5 1)."),
    ] = None,
    seed: SeedOption = 0,
    save_kernel: Annotated[
        bool,
        typer.Option("--save-kernel", help="Also write OUTPUT/kernels/<stem>.npy (exact) and .png (peak = white)."),
    ] = False,
    output_format: FormatOption = "auto",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Random motion blur: each image gets its own kernel (normalised to sum 1, centred, no shift)."""
    from restorecli.data.degradations import BlurParams

    overrides: dict[str, Any] = {"kind": kernel}
    if kernel_size is not None:
        overrides["kernel_size_range"] = kernel_size
    if length is not None:
        overrides["length_range"] = length
    params = BlurParams(**overrides)
    _run("blur", input_path, output, params, seed, as_json, quiet, save_kernel=save_kernel, output_format=output_format)


@reports_errors
def rain(
    input_path: InputArgument,
    output: OutputArgument,
    preset: Annotated[
        Literal["light", "medium", "mixed", "rain100l", "rain100h", "photoshop", "heavy", "mixture"],
        typer.Option(
            "--preset",
            help=(
                "Rain model and starting ranges. Like the benchmark sets: rain100l (sparse, light, one "
                "direction), rain100h (dense, wide, bright, five directions), photoshop (blurred streak layers, "
                "screen blend: Rain800/Test100/Rain1400), heavy (streaks under a veil of accumulated rain), "
                "mixture (one of those four per image, as training draws them). Version 0.1's thin streaks: "
                "light, medium, mixed (light to heavy)."
            ),
        ),
    ] = "mixed",
    density: Annotated[
        Range | None, typer.Option("--density", help="Fraction of pixels seeding a streak, low high.")
    ] = None,
    angle: Annotated[
        Range | None, typer.Option("--angle", help="Degrees from vertical (positive falls to the right), low high.")
    ] = None,
    length: Annotated[Range | None, typer.Option("--length", help="Streak length in pixels, low high.")] = None,
    width: Annotated[Range | None, typer.Option("--width", help="Streak width (FWHM) in pixels, low high.")] = None,
    intensity: Annotated[
        Range | None, typer.Option("--intensity", help="Brightness a streak adds on [0, 1], low high.")
    ] = None,
    seed: SeedOption = 0,
    output_format: FormatOption = "auto",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Synthetic rain: streak layers added (O = B + S) or screen-blended, under a veil for heavy rain; clipped."""
    from restorecli.data.degradations import RainParams

    ranges = {
        "density_range": density,
        "angle_range": angle,
        "length_range": length,
        "width_range": width,
        "intensity_range": intensity,
    }
    params = RainParams.preset(preset, **{name: value for name, value in ranges.items() if value is not None})
    _run("rain", input_path, output, params, seed, as_json, quiet, output_format=output_format)


def _seed_note(settings: dict[str, Any]) -> str:
    """`` (seed N)`` for the random degradations; nothing for deterministic ones (downscale)."""
    return f" (seed {settings['seed']})" if "seed" in settings else ""


@reports_errors
def downscale(
    input_path: InputArgument,
    output: OutputArgument,
    scale: Annotated[
        int, typer.Option("--scale", min=2, help="Downscaling factor N: each side becomes ceil(side / N).")
    ],
    output_format: Annotated[
        Literal["auto", "png"],
        typer.Option("--format", help="auto: each input's format and bit depth (JPEG becomes PNG); png."),
    ] = "auto",
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Low-resolution inputs for super-resolution: MATLAB-compatible bicubic imresize by 1/N, as SR benchmarks are made.

    Antialiased cubic kernel (a = -0.5), symmetric borders; 8/16-bit and alpha are kept.

    Crop the high-resolution images to multiples of N first so the pairs stay aligned.
    """
    from restorecli.data.resize import downscale_files

    summary = downscale_files(input_path, output, scale, output_format=output_format, progress=not (as_json or quiet))
    _report(summary, as_json)


@degrade_app.callback()
def _inputs(max_pixels: MaxPixelsOption = None, follow_symlinks: FollowSymlinksOption = False) -> None:
    """Input limits shared by every degradation (given before it: ``restore degrade --max-pixels N noise ...``)."""
    apply_input_policy(max_pixels, follow_symlinks)


def register(app: typer.Typer) -> None:
    """Add ``restore degrade noise|blur|rain|downscale`` to the app."""
    degrade_app.command("noise")(noise)
    degrade_app.command("blur")(blur)
    degrade_app.command("rain")(rain)
    degrade_app.command("downscale")(downscale)
    app.add_typer(degrade_app, name="degrade")
