"""``restore eval``: Typer wiring for :mod:`restorecli.metrics.evaluate`."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from restorecli.cli.common import (
    DeviceOption,
    JsonOption,
    PrecisionOption,
    TileOption,
    TileOverlapOption,
    WorkersOption,
    format_table,
    job_exit,
    reports_errors,
)

if TYPE_CHECKING:
    from restorecli.engine.distributed import Session
    from restorecli.metrics.evaluate import EvalReport, Transform
    from restorecli.zoo.descriptor import ModelDescriptor

_PRECISION = {"psnr": ".4f", "ssim": ".6f", "miou": ".4f", "niou": ".4f", "pd": ".4f"}
_FA_SCALE = 1e6  # papers print FA in units of 1e-6
_COUNTS = ("psnr_inf", "targets", "detected", "false_alarm_pixels", "pixels")


def _cell(name: str, value: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf"
    if name == "fa":
        return f"{value * _FA_SCALE:.3f}"
    return format(value, _PRECISION.get(name, "g"))


def _header(name: str) -> str:
    return "fa(x1e-6)" if name == "fa" else name


def _print_table(report: EvalReport, per_image: bool) -> None:
    from restorecli.metrics.evaluate import describe

    metrics = list(report.settings.metrics or ())
    typer.echo(f"restore eval: {report.count} pairs | {describe(report.convention)}")
    rows: list[list[object]] = []
    if per_image:
        rows.extend([s.pair.name, *(_cell(name, s.values[name]) for name in metrics)] for s in report.scores)
    total = "overall" if report.settings.mask_metrics else "mean"
    rows.append([total, *(_cell(name, report.summary[name]) for name in metrics)])
    typer.echo(format_table(["image", *(_header(name) for name in metrics)], rows, right_from=1))
    counts = {key: int(value) for key, value in report.summary.items() if key in _COUNTS}
    if counts.get("psnr_inf"):
        typer.echo(f"{counts['psnr_inf']} identical pairs (PSNR = inf) are left out of the PSNR mean")
    if report.class_iou:
        typer.echo("IoU per class: " + "  ".join(f"{k}={_cell('miou', v)}" for k, v in enumerate(report.class_iou)))
    if "targets" in counts:
        typer.echo(
            f"targets {counts['targets']}, detected {counts['detected']}, "
            f"false-alarm pixels {counts['false_alarm_pixels']} of {counts['pixels']}"
        )


@reports_errors
def evaluate(
    gt: Annotated[Path, typer.Option("--gt", help="Ground truth: an image or a folder (matched by file stem).")],
    pred: Annotated[
        Path | None,
        typer.Argument(help="Predictions: an image or a folder. Omit with --model/--input.", show_default=False),
    ] = None,
    metrics: Annotated[
        str | None,
        typer.Option(
            "--metrics",
            help="Comma list of psnr,ssim,miou,niou,pd,fa (default: miou,niou,pd,fa for mask GT, else psnr,ssim).",
        ),
    ] = None,
    y_channel: Annotated[
        bool,
        typer.Option("--y-channel", help="PSNR/SSIM on BT.601 luma Y = 16 + 65.481R + 128.553G + 24.966B (BasicSR)."),
    ] = False,
    round_y: Annotated[
        bool,
        typer.Option("--round-y", help="Round Y to integers as MATLAB rgb2ycbcr does (Restormer deraining script)."),
    ] = False,
    crop_border: Annotated[
        int, typer.Option("--crop-border", min=0, help="Pixels dropped at each edge before scoring.")
    ] = 0,
    data_range: Annotated[
        float | None, typer.Option("--data-range", help="Value of white. Default: from the bit depth (255 or 65535).")
    ] = None,
    gt_pattern: Annotated[
        str, typer.Option("--gt-pattern", help="GT file stem from the prediction stem, e.g. '{stem}_pixels0'.")
    ] = "{stem}",
    allow_missing: Annotated[
        bool, typer.Option("--allow-missing", help="Skip (and list) unmatched files instead of failing.")
    ] = False,
    num_classes: Annotated[int, typer.Option("--num-classes", help="Classes in index masks (2 = binary masks).")] = 2,
    ignore_index: Annotated[int, typer.Option("--ignore-index", help="GT value left out of mask metrics.")] = 255,
    threshold: Annotated[
        float, typer.Option("--threshold", help="Binary masks: predicted target where value > threshold x white.")
    ] = 0.5,
    distance: Annotated[
        float, typer.Option("--distance", help="PD: max centroid distance in pixels (strictly less; DNANet uses 3).")
    ] = 3.0,
    per_image: Annotated[bool, typer.Option("--per-image", help="Also print one row per image.")] = False,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Write per-image rows to this CSV file.")] = None,
    as_json: JsonOption = False,
    workers: WorkersOption = 0,
    model: Annotated[
        str | None, typer.Option("--model", help="Restore --input with this zoo name or weights file, then score.")
    ] = None,
    input_path: Annotated[
        Path | None, typer.Option("--input", help="Degraded images (file or folder) to restore with --model.")
    ] = None,
    save: Annotated[
        Path | None, typer.Option("--save", help="With --model: also write restored <stem>.png here.")
    ] = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "fp32",
    tile: TileOption = None,
    tile_overlap: TileOverlapOption = 32,
) -> None:
    """Score predictions against ground truth: PSNR/SSIM as BasicSR, or mIoU/nIoU/PD/FA for masks."""
    from restorecli.engine import distributed
    from restorecli.errors import RestoreError
    from restorecli.metrics.evaluate import EvalSettings, check_save_dir, evaluate_paths, parse_metrics

    if (model is None) != (input_path is None):
        raise typer.BadParameter("--model and --input go together.")
    source = input_path if model is not None else pred
    if source is None or (model is not None and pred is not None):
        raise typer.BadParameter("Give either PRED or --model with --input.")
    if save is not None and model is None:
        raise typer.BadParameter("--save needs --model.")

    def settings() -> EvalSettings:
        if save is not None:
            check_save_dir(save, source, gt)
        return EvalSettings(
            metrics=parse_metrics(metrics) if metrics else None,
            crop_border=crop_border,
            y_channel=y_channel,
            round_y=round_y,
            data_range=data_range,
            num_classes=num_classes,
            ignore_index=ignore_index,
            threshold=threshold,
            distance=distance,
        )

    with distributed.session(device=device) as session:
        try:
            chosen = session.settle(settings)
            transform = (
                None if model is None else _restoring(session, model, device, tile, tile_overlap, precision, save)
            )
            report = evaluate_paths(
                source,
                gt,
                chosen,
                gt_pattern=gt_pattern,
                allow_missing=allow_missing,
                csv_path=csv_path,
                workers=workers,
                transform=transform,
                progress=sys.stderr.isatty(),
                keep_scores=per_image,
                session=session,
            )
        except RestoreError as exc:
            failure: str | None = str(exc)
        else:
            if session.is_main:
                _print_report(report, as_json, per_image)
            scored = report.count + len(report.failures)
            failure = f"{len(report.failures)} of {scored} pairs could not be scored" if report.failures else None
        # Every rank exits 1 if any rank failed; rank 0 alone says why, inside the session.
        ending = job_exit(failure, session.is_main)
    if ending is not None:
        raise ending


def _restoring(
    session: Session,
    model: str,
    device: str,
    tile: int | None,
    tile_overlap: int,
    precision: str,
    save: Path | None,
) -> Transform:
    """Load ``model`` on this rank's device (rank 0 first, see ``Session.in_stages``) and wrap it as a transform."""
    from restorecli.api import load_model
    from restorecli.engine.distributed import rank_device
    from restorecli.metrics.evaluate import restoring_transform

    def load() -> ModelDescriptor:
        return load_model(model, device=rank_device(device, session.context))

    loaded = session.settle(lambda: session.in_stages(load))
    return restoring_transform(loaded, tile=tile, tile_overlap=tile_overlap, precision=precision, save_dir=save)


def _print_report(report: EvalReport, as_json: bool, per_image: bool) -> None:
    from restorecli.metrics.pairing import describe_unmatched

    for line in describe_unmatched(report.missing_gt, report.missing_pred):
        typer.echo(f"Warning: skipped {line}", err=True)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_table(report, per_image)


def register(app: typer.Typer) -> None:
    """Add ``restore eval`` to the app."""
    app.command("eval")(evaluate)
