"""``restore split`` and ``restore crop-patches``: Typer wiring for :mod:`restorecli.data`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

from restorecli.cli.common import (
    EXIT_FAILURE,
    FollowSymlinksOption,
    JsonOption,
    MaxPixelsOption,
    QuietOption,
    WorkersOption,
    apply_input_policy,
    format_table,
    reports_errors,
)
from restorecli.errors import escape_text

DirsOption = Annotated[
    str | None,
    typer.Option(
        "--dirs",
        help="Comma-separated sibling folders matched by id (e.g. input,target). "
        "Default: input/+target/, else images/+masks/, else the folder's own images.",
    ),
]
PatternOption = Annotated[
    list[str] | None,
    typer.Option(
        "--pattern",
        help="FOLDER=TEMPLATE naming a folder's files from the id, e.g. masks={id}_pixels0 (repeatable).",
    ),
]


def _folders(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


@reports_errors
def split(
    dataset: Annotated[Path, typer.Argument(help="Dataset folder (input/+target/, images/+masks/, or see --dirs).")],
    train: Annotated[float | None, typer.Option("--train", help="Train fraction (default: the remainder).")] = None,
    val: Annotated[float | None, typer.Option("--val", help="Validation fraction (default 0).")] = None,
    test: Annotated[
        float | None, typer.Option("--test", "--test-ratio", help="Test fraction (default 0.2 when no ratio is given).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Hash seed: the same seed gives the same lists anywhere.")] = 0,
    name: Annotated[
        str | None, typer.Option("--name", help="List folder DATASET/NAME (default: the ratios, e.g. 50_50).")
    ] = None,
    dirs: DirsOption = None,
    pattern: PatternOption = None,
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="List complete ids only instead of failing on ids a folder lacks.")
    ] = False,
    reassign: Annotated[
        bool, typer.Option("--reassign", help="Ignore existing lists and place every id by its hash.")
    ] = False,
    materialize: Annotated[
        Path | None,
        typer.Option(
            "--materialize", help="Also lay the split out as DEST/<split>/<folder>/ (hard links, else copies)."
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Write reproducible train/val/test id lists; ids keep their split when files are added."""
    from restorecli.data import SplitRatios, materialize_split, parse_name_patterns, split_dataset
    from restorecli.images import check_output_folder

    if materialize:
        check_output_folder(materialize, "--materialize")  # before the lists are written
    ratios = SplitRatios.from_options(train, val, test)
    result = split_dataset(
        dataset,
        ratios,
        seed=seed,
        name=name,
        dirs=_folders(dirs),
        patterns=parse_name_patterns(pattern or []),
        allow_missing=allow_missing,
        reassign=reassign,
    )
    placed = materialize_split(result.index, result.lists, materialize) if materialize else None
    if json_output:
        payload = result.to_dict(dataset, placed)
        typer.echo(json.dumps(payload, indent=2))
        return
    rows: list[list[object]] = [
        [split, len(ids), result.kept[split], len(ids) - result.kept[split]] for split, ids in result.lists.items()
    ]
    rows.append(["total", sum(len(ids) for ids in result.lists.values()), "", ""])
    typer.echo(format_table(["split", "ids", "kept", "new"], rows, right_from=1))
    written = ", ".join(path.name for path in result.written) or "none (lists unchanged)"
    typer.echo(f"lists: {result.directory} (written: {written})")
    if placed is not None:
        counts = f"{placed.linked} linked, {placed.copied} copied, {placed.present} present"
        typer.echo(f"materialized: {placed.destination} ({counts})")
    if result.missing:
        typer.echo(f"Warning: {len(result.missing)} ids lack a file in some folder and are not listed", err=True)
    if result.dropped:
        typer.echo(f"Warning: {len(result.dropped)} ids of the existing lists are gone and were dropped", err=True)
    if result.index.unmatched:
        typer.echo(
            f"Warning: {len(result.index.unmatched)} files do not fit their folder's --pattern and were ignored",
            err=True,
        )


@reports_errors
def crop_patches(
    input_dir: Annotated[Path, typer.Argument(help="A folder of images, or a dataset root with paired folders.")],
    output_dir: Annotated[Path, typer.Argument(help="Output folder for patches (per pair folder) and patches.csv.")],
    size: Annotated[int, typer.Option("--size", min=1, help="Patch side in pixels.")] = 480,
    step: Annotated[int, typer.Option("--step", min=1, help="Distance between patch starts in pixels.")] = 240,
    thresh_size: Annotated[
        int,
        typer.Option("--thresh-size", min=0, help="Add a border-flush last patch when the remainder exceeds this."),
    ] = 0,
    pairs: Annotated[
        str | None,
        typer.Option(
            "--pairs",
            help="Comma-separated folders cut at identical positions (e.g. input,target). "
            "Default: input/+target/ or images/+masks/ when present, else INPUT's own images.",
        ),
    ] = None,
    pattern: PatternOption = None,
    list_path: Annotated[
        Path | None, typer.Option("--list", help="Only the ids of this list (e.g. DATASET/50_50/train.txt).")
    ] = None,
    small: Annotated[
        Literal["skip", "pad", "whole"],
        typer.Option("--small", help="Images with a side below --size: skip (counted), pad (mirror), or whole."),
    ] = "skip",
    png_compression: Annotated[
        int, typer.Option("--png-compression", min=0, max=9, help="PNG level 0-9 (lossless either way).")
    ] = 3,
    workers: WorkersOption = 0,
    skip_existing: Annotated[
        bool, typer.Option("--skip-existing", help="Resume: keep patch files that already exist.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Allow a non-empty OUTPUT and replace patches of the same name.")
    ] = False,
    json_output: JsonOption = False,
    max_pixels: MaxPixelsOption = None,
    follow_symlinks: FollowSymlinksOption = False,
    quiet: QuietOption = False,
) -> None:
    """Cut images (or aligned pairs) into overlapping patches, BasicSR extract_subimages style."""
    apply_input_policy(max_pixels, follow_symlinks)
    from restorecli.data import CropOptions, parse_name_patterns
    from restorecli.data import crop_patches as run_crop
    from restorecli.images import check_output_folder

    check_output_folder(output_dir, "OUTPUT_DIR")
    options = CropOptions(
        size=size,
        step=step,
        thresh_size=thresh_size,
        small=small,
        png_compression=png_compression,
        skip_existing=skip_existing,
    )
    report = run_crop(
        input_dir,
        output_dir,
        options,
        dirs=_folders(pairs),
        patterns=parse_name_patterns(pattern or []),
        list_path=list_path,
        workers=workers,
        overwrite=overwrite,
        progress=not quiet,
    )
    if json_output:
        payload = report.to_dict(input_dir, output_dir)
        typer.echo(json.dumps(payload, indent=2))
    else:
        small_note = {"skip": "skipped", "pad": f"mirror-padded to {size}", "whole": "kept whole"}[small]
        typer.echo(
            format_table(
                None,
                [
                    ["images", report.images, ""],
                    ["cropped", report.cropped, ""],
                    ["small", report.small, f"(a side below {size} px: {small_note})"],
                    ["failed", len(report.failures), ""],
                    ["patches", report.patches, f"(written {report.written}, existing {report.existing})"],
                ],
            )
        )
        typer.echo(f"manifest: {report.manifest}")
    for item_id, message in report.failures.items():
        typer.echo(f"Failed {escape_text(item_id)}: {escape_text(message)}", err=True)
    if report.failures:
        raise typer.Exit(EXIT_FAILURE)


def register(app: typer.Typer) -> None:
    """Add ``split`` and ``crop-patches`` to the ``restore`` app."""
    app.command("split")(split)
    app.command("crop-patches")(crop_patches)
