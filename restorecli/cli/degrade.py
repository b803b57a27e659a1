"""``restore degrade noise|blur|rain INPUT OUTPUT``: degraded copies of clean images, reproducible by ``--seed``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from restorecli.cli.common import EXIT_FAILURE, JsonOption, reports_errors

if TYPE_CHECKING:
    from restorecli.train.degradations import DegradeSummary

Range = tuple[float, float]

degrade_app = typer.Typer(
    help=(
        "Write degraded copies of clean images (Gaussian noise, motion blur, rain streaks) to build training "
        "and evaluation sets. Outputs keep the input file names and bit depth (JPEG inputs become PNG)."
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


def _run(kind: str, input_path: Path, output: Path, params: Any, seed: int, as_json: bool, **options: Any) -> None:
    from restorecli.train.degradations import degrade_files

    summary = degrade_files(
        kind, input_path, output, params, seed, progress=not as_json, **options  # type: ignore[arg-type]
    )
    _report(summary, as_json)


def _report(summary: DegradeSummary, as_json: bool) -> None:
    """Print the summary (table line or JSON), list skipped files on stderr, exit 1 if any failed."""
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        typer.echo(
            f"Wrote {len(summary.written)} {summary.kind} image(s) to {summary.output} "
            f"in {summary.seconds:.1f} s (seed {summary.settings['seed']})."
        )
    for path, message in summary.failed:
        typer.echo(f"Skipped {path}: {message}", err=True)
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
) -> None:
    """Additive white Gaussian noise; by default the papers' protocol, rounded and clipped to the image's bit depth."""
    from restorecli.train.degradations import NoiseParams

    params = NoiseParams(sigma=sigma, clip=clip, quantize=quantize)
    _run("noise", input_path, output, params, seed, as_json, noise_seeding=seeding, output_format=output_format)


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
) -> None:
    """Random motion blur: each image gets its own kernel (normalised to sum 1, centred, no shift)."""
    from restorecli.train.degradations import BlurParams

    overrides: dict[str, Any] = {"kind": kernel}
    if kernel_size is not None:
        overrides["kernel_size_range"] = kernel_size
    if length is not None:
        overrides["length_range"] = length
    params = BlurParams(**overrides)
    _run("blur", input_path, output, params, seed, as_json, save_kernel=save_kernel, output_format=output_format)


@reports_errors
def rain(
    input_path: InputArgument,
    output: OutputArgument,
    preset: Annotated[
        Literal["light", "medium", "heavy", "mixed"],
        typer.Option("--preset", help="Starting ranges: light, medium, heavy, or mixed (light to heavy)."),
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
) -> None:
    """Synthetic rain streaks added to the image and clipped (the Rain100L/H model O = B + R)."""
    from restorecli.train.degradations import RainParams

    ranges = {
        "density_range": density,
        "angle_range": angle,
        "length_range": length,
        "width_range": width,
        "intensity_range": intensity,
    }
    params = RainParams.preset(preset, **{name: value for name, value in ranges.items() if value is not None})
    _run("rain", input_path, output, params, seed, as_json, output_format=output_format)


def register(app: typer.Typer) -> None:
    """Add ``restore degrade noise|blur|rain`` to the app."""
    degrade_app.command("noise")(noise)
    degrade_app.command("blur")(blur)
    degrade_app.command("rain")(rain)
    app.add_typer(degrade_app, name="degrade")
