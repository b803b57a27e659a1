"""A report page from a ``restore eval`` run: the same per-image numbers ``--json`` prints, as pictures."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

from restorecli import __version__
from restorecli.errors import RestoreError
from restorecli.images import read_array
from restorecli.metrics import EvalReport
from restorecli.metrics.scoring import score_arrays
from restorecli.metrics.segmentation import decode_prediction, decode_target
from restorecli.metrics.settings import describe
from restorecli.report.page import MaskSettings, ReportHeader, ReportImage, write_report


def write_eval_report(
    report: EvalReport,
    page: Path,
    *,
    restored: Path | None = None,
    model_facts: dict[str, str] | None = None,
) -> Path:
    """Write the report page of an evaluation whose per-image scores were kept.

    Args:
        report: the evaluation (``keep_scores=True``).
        page: the ``.html`` file to write.
        restored: with ``restore eval --model``, the ``--save`` folder: each pair's prediction path is
            then the degraded input, and the restored ``<stem>.png`` there is the output.
        model_facts: what to print about the model that restored the inputs.
    """
    settings = report.settings
    images = []
    for score in report.scores:
        pair = score.pair
        output, source, input_psnr = pair.pred, None, None
        if restored is not None:
            output, source = restored / f"{pair.pred.stem}.png", pair.pred
            if "psnr" in score.values:
                input_psnr = _psnr(source, pair.gt, report)
        images.append(ReportImage(pair.name, output, pair.gt, score.values, source, input_psnr))
    masks = None
    if settings.mask_metrics:
        masks = MaskSettings(
            decode_prediction=lambda array: decode_prediction(
                array, num_classes=settings.num_classes, threshold=settings.threshold
            ),
            decode_target=lambda array: decode_target(
                array, num_classes=settings.num_classes, ignore_index=settings.ignore_index
            ),
            distance=settings.distance,
        )
    header = ReportHeader(
        title=f"restore eval: {report.count} pairs",
        protocol=describe(report.convention),
        command=shlex.join(["restore", *sys.argv[1:]]),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        version=__version__,
        model=model_facts or {},
    )
    return write_report(page, header, images, report.summary, masks=masks)


def _psnr(source: Path, truth: Path, report: EvalReport) -> float | None:
    """The degraded input's PSNR under the run's own convention (channel, crop, data range)."""
    only_psnr = dataclasses.replace(report.settings, metrics=("psnr",))
    try:
        values, _ = score_arrays(read_array(source), read_array(truth), only_psnr)
    except RestoreError:
        return None  # an input of another size (e.g. before super-resolution) has no gain
    return values["psnr"]
