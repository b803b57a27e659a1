"""``restore eval``: Typer wiring for :mod:`restorecli.metrics.evaluate`.

With ``--model`` the inputs are restored before scoring: this module loads the model and hands the
metrics a plain transform, so :mod:`restorecli.metrics` never imports the engine or the API.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from restorecli.cli.common import (
    DeviceOption,
    FollowSymlinksOption,
    JsonOption,
    MaxMemoryOption,
    MaxPixelsOption,
    PrecisionOption,
    QuietOption,
    TileBatchOption,
    TileOption,
    TileOverlapOption,
    WorkersOption,
    apply_input_policy,
    format_table,
    job_exit,
    reports_errors,
    run_options,
)
from restorecli.engine.options import DEFAULT_TILE_OVERLAP

if TYPE_CHECKING:
    import numpy as np

    from restorecli.distributed import Session
    from restorecli.engine.options import RunOptions
    from restorecli.metrics import EvalReport, EvalSettings, Transform
    from restorecli.zoo.descriptor import ModelDescriptor

_COUNTS = ("psnr_inf", "targets", "detected", "false_alarm_pixels", "pixels")


def _cell(name: str, value: float) -> str:
    """A value as the metric's table format says (:class:`restorecli.metrics.Metric` ``digits``)."""
    from restorecli.metrics import METRICS

    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf"
    metric = METRICS[name]
    return format(value * metric.display_scale, metric.digits)


def _header(name: str) -> str:
    from restorecli.metrics import METRICS

    return name + METRICS[name].display_unit


def _print_table(report: EvalReport, per_image: bool) -> None:
    from restorecli.metrics.settings import describe

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
            help=(
                "Comma list of psnr,ssim,ssim3d,ssim-skimage,miou,niou,pd,fa (default: miou,niou,pd,fa for "
                "mask GT, else psnr,ssim). ssim3d: NAFNet's 3-D SSIM (11x11x11 Gaussian over height, width "
                "and channel); ssim-skimage: scikit-image's default SSIM (7x7 uniform window)."
            ),
        ),
    ] = None,
    protocol: Annotated[
        str | None,
        typer.Option(
            "--protocol",
            help=(
                "A paper's channel, crop and metrics: restormer-derain, restormer-gopro, restormer-sidd, restormer-dpdd, "
                "nafnet-sidd, nafnet-gopro, nafnet-reds, denoise-rgb, denoise-gray, restorecli-val, "
                "sr-x2, sr-x3, sr-x4. Not with --metrics, --y-channel, --round-y or --crop-border."
            ),
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
        int | None,
        typer.Option("--crop-border", min=0, help="Pixels dropped at each edge before scoring.  [default: 0]"),
    ] = None,
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
    report_path: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Write a visual report here (e.g. report/index.html; pictures go beside it): summary, "
            "sortable per-image table, comparison slider, error maps, worst-region crops, mask overlays.",
        ),
    ] = None,
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
    tile_overlap: TileOverlapOption = DEFAULT_TILE_OVERLAP,
    tile_batch: TileBatchOption = None,
    max_memory: MaxMemoryOption = None,
    max_pixels: MaxPixelsOption = None,
    follow_symlinks: FollowSymlinksOption = False,
    quiet: QuietOption = False,
) -> None:
    """Score predictions against ground truth: PSNR/SSIM as BasicSR or a paper's protocol, or mIoU/nIoU/PD/FA for masks."""
    from restorecli import distributed
    from restorecli.errors import RestoreError
    from restorecli.images import check_output_file, check_output_folder
    from restorecli.metrics.evaluate import check_save_dir, evaluate_paths

    if (model is None) != (input_path is None):
        raise typer.BadParameter("--model and --input go together.")
    source = input_path if model is not None else pred
    if source is None or (model is not None and pred is not None):
        raise typer.BadParameter("Give either PRED or --model with --input.")
    if save is not None and model is None:
        raise typer.BadParameter("--save needs --model.")
    if report_path is not None and model is not None and save is None:
        raise typer.BadParameter("--report with --model needs --save (the restored images the page shows).")
    preset = {"--metrics": metrics, "--y-channel": y_channel, "--round-y": round_y, "--crop-border": crop_border}
    overridden = [flag for flag, value in preset.items() if value is not None and value is not False]  # 0 is given
    if protocol is not None and overridden:
        raise typer.BadParameter(f"--protocol sets channel, crop and metrics; leave out {', '.join(overridden)}.")

    apply_input_policy(max_pixels, follow_symlinks)

    def settings() -> EvalSettings:
        if save is not None:
            check_output_folder(save, "--save")
            check_save_dir(save, source, gt)
        if csv_path is not None:
            check_output_file(csv_path, "--csv")
        if report_path is not None:
            check_output_file(report_path, "--report")
        return _settings(
            protocol,
            metrics=metrics,
            crop_border=crop_border or 0,
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
                None
                if model is None
                else _restoring(
                    session,
                    model,
                    device,
                    run_options(
                        device,
                        tile=tile,
                        tile_overlap=tile_overlap,
                        tile_batch=tile_batch,
                        precision=precision,
                        max_memory=max_memory,
                    ),
                    save,
                )
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
                progress=sys.stderr.isatty() and not quiet,
                keep_scores=per_image or report_path is not None,
                session=session,
            )
        except RestoreError as exc:
            failure: str | None = str(exc)
        else:
            if session.is_main:
                _print_report(report, as_json, per_image)
                if report_path is not None:
                    _write_page(report, report_path, model, save)
            scored = report.count + len(report.failures)
            failure = f"{len(report.failures)} of {scored} pairs could not be scored" if report.failures else None
        # Every rank exits 1 if any rank failed; rank 0 alone says why, inside the session.
        ending = job_exit(failure, session.is_main)
    if ending is not None:
        raise ending


def _settings(protocol: str | None, *, metrics: str | None, **others: object) -> EvalSettings:
    """The evaluation settings: a protocol's preset, or the conventions given one by one."""
    from restorecli.metrics import EvalSettings, parse_metrics

    if protocol is not None:
        fixed = ("crop_border", "y_channel", "round_y")
        return EvalSettings.for_protocol(protocol, **{k: v for k, v in others.items() if k not in fixed})
    return EvalSettings(metrics=parse_metrics(metrics) if metrics else None, **others)  # type: ignore[arg-type]


def _restoring(
    session: Session,
    model: str,
    device: str,
    options: RunOptions,
    save: Path | None,
) -> Transform:
    """Load ``model`` on this rank's device (rank 0 first, see ``Session.in_stages``) and wrap it as a transform.

    The transform restores each input as ``options`` says and, with ``save``, writes ``<stem>.png`` there.
    """
    from restorecli.api import load_model, restore_image
    from restorecli.distributed import rank_device
    from restorecli.images import write_array

    def load() -> ModelDescriptor:
        return load_model(model, device=rank_device(device, session.context))

    loaded = session.settle(lambda: session.in_stages(load))

    def restore(source: Path, image: np.ndarray) -> np.ndarray:
        restored = restore_image(loaded, image, options=options)
        if save is not None:
            write_array(save / f"{source.stem}.png", restored)
        return restored

    return restore


def _write_page(report: EvalReport, page: Path, model: str | None, save: Path | None) -> None:
    from restorecli.report.evaluation import write_eval_report

    written = write_eval_report(report, page, restored=save, model_facts={"model": model} if model else None)
    typer.echo(f"Report: {written}", err=True)


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
