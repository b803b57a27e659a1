"""Folder-level evaluation: score prediction/ground-truth pairs in parallel and aggregate.

Memory stays flat in the number of images: pairs are scored one by one (or by a process pool, in
order), each score is streamed to a callback or a CSV file and folded into running totals; the
per-image scores are kept only when asked for. Aggregation follows the reference protocols: PSNR and
SSIM are means of per-image values (BasicSR, the Restormer/NAFNet scripts), mIoU and PD/FA are computed
from counts summed over the set (DNANet), nIoU is the mean of per-image IoU (ACM).

Under torchrun each rank scores its share of the pairs; rank 0 gathers the per-image values and adds
them up in pair order, so every mean is bit-identical to a single-process run, and the confusion
matrices are summed across ranks (integers: exact in any order).
"""

from __future__ import annotations

import csv
import logging
import math
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO, get_args

import numpy as np

from restorecli.errors import ConfigError, MetricError, RestoreError
from restorecli.images import atomic_path, dtype_max, read_array, split_alpha, write_array
from restorecli.metrics.pairing import Pair, Pairing, match_pairs
from restorecli.metrics.psnr_ssim import quality_metrics
from restorecli.metrics.segmentation import (
    DEFAULT_DISTANCE,
    DEFAULT_IGNORE_INDEX,
    DEFAULT_THRESHOLD,
    MaskStats,
    decode_prediction,
    decode_target,
    looks_like_mask,
    mask_stats,
)

logger = logging.getLogger("restorecli.metrics")

if TYPE_CHECKING:
    from restorecli.engine.distributed import JobProgress, Session
    from restorecli.zoo.descriptor import ModelDescriptor

_NO_CONFUSION = np.zeros((0, 0), dtype=np.int64)  # one object: pickled once however many scores share it
MetricName = Literal["psnr", "ssim", "miou", "niou", "pd", "fa"]
METRIC_NAMES: tuple[MetricName, ...] = get_args(MetricName)
IMAGE_METRICS: tuple[MetricName, ...] = ("psnr", "ssim")
MASK_METRICS: tuple[MetricName, ...] = ("miou", "niou", "pd", "fa")
Transform = Callable[[Path, np.ndarray], np.ndarray]
"""Turns the pixels read from a pair's ``pred`` path into the prediction (e.g. restores them)."""


def parse_metrics(text: str) -> tuple[MetricName, ...]:
    """``"psnr,ssim"`` -> ``("psnr", "ssim")``; unknown names raise ConfigError."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRIC_NAMES]
    if unknown or not names:
        raise ConfigError(f"Expected metrics among {', '.join(METRIC_NAMES)}, but got {text!r}")
    return tuple(dict.fromkeys(names))  # type: ignore[arg-type]  # validated above; keeps order, drops repeats


def default_metrics(
    pairs: Sequence[Pair], *, num_classes: int = 2, ignore_index: int = DEFAULT_IGNORE_INDEX
) -> tuple[MetricName, ...]:
    """PSNR/SSIM for images, mIoU/nIoU/PD/FA when the first ground truth decodes as a mask."""
    if not pairs:
        return IMAGE_METRICS
    first = read_array(pairs[0].gt)
    return MASK_METRICS if looks_like_mask(first, num_classes=num_classes, ignore_index=ignore_index) else IMAGE_METRICS


@dataclass(frozen=True)
class EvalSettings:
    """What to compute and by which convention; printed with the results so numbers can be traced.

    ``metrics=None`` lets :func:`evaluate_paths` choose from the first ground truth (masks or images).
    """

    metrics: tuple[MetricName, ...] | None = IMAGE_METRICS
    crop_border: int = 0
    y_channel: bool = False
    round_y: bool = False
    data_range: float | None = None  # None: from the bit depth (255 or 65535)
    num_classes: int = 2
    ignore_index: int = DEFAULT_IGNORE_INDEX
    threshold: float = DEFAULT_THRESHOLD
    distance: float = DEFAULT_DISTANCE

    def __post_init__(self) -> None:
        """Reject impossible settings before any worker starts."""
        checks = (
            (
                self.metrics is None or (bool(self.metrics) and set(self.metrics) <= set(METRIC_NAMES)),
                f"metrics among {', '.join(METRIC_NAMES)}",
                self.metrics,
            ),
            (self.crop_border >= 0, "a crop border >= 0", self.crop_border),
            (self.data_range is None or self.data_range > 0, "a positive data range", self.data_range),
            (not self.round_y or self.y_channel, "round_y only together with y_channel", self.round_y),
            (self.num_classes >= 2, "at least 2 classes", self.num_classes),
            (0.0 <= self.threshold < 1.0, "a threshold in [0, 1)", self.threshold),
            (self.distance > 0, "a positive centroid distance", self.distance),
        )
        for ok, expected, got in checks:
            if not ok:
                raise ConfigError(f"Expected {expected}, but got {got}")

    @property
    def image_metrics(self) -> tuple[MetricName, ...]:
        return tuple(name for name in self.metrics or () if name in IMAGE_METRICS)

    @property
    def mask_metrics(self) -> tuple[MetricName, ...]:
        return tuple(name for name in self.metrics or () if name in MASK_METRICS)

    def convention(self, data_ranges: Sequence[float] = ()) -> dict[str, object]:
        """The exact protocol as plain data (JSON header); :func:`describe` renders it as one line."""
        result: dict[str, object] = {"metrics": list(self.metrics or ())}
        if self.image_metrics:
            channel = "rgb"
            if self.y_channel:
                channel = "y-bt601-rounded" if self.round_y else "y-bt601"
            result.update(
                channel=channel,
                crop_border=self.crop_border,
                data_range=list(data_ranges) if self.data_range is None else [self.data_range],
                data_range_source="bit depth" if self.data_range is None else "option",
                reference="BasicSR calculate_psnr / calculate_ssim (float64)",
                ssim="gaussian 11x11 sigma 1.5, K1 0.01, K2 0.03, valid region, mean over channels",
            )
        if self.mask_metrics:
            result.update(
                num_classes=self.num_classes,
                ignore_index=self.ignore_index,
                threshold=self.threshold,
                miou="confusion matrix summed over the set, mean over classes present",
                niou="mean of per-image foreground IoU (ACM)",
                pd_fa=f"8-connected components, centroid distance < {self.distance:g} px, FA per pixel (DNANet)",
            )
        return result


def describe(convention: dict[str, object]) -> str:
    """One human line for a table header, e.g. ``channel=y-bt601 crop_border=4 data_range=255``."""
    keys = ("metrics", "channel", "crop_border", "data_range", "num_classes", "ignore_index", "threshold", "pd_fa")

    def show(value: object) -> str:
        if isinstance(value, list):
            return ",".join(show(item) for item in value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    return " ".join(f"{key}={show(convention[key])}" for key in keys if key in convention)


@dataclass(frozen=True)
class PairScore:
    """One pair's per-image values (NaN where undefined) and its contribution to the totals.

    Under torchrun the per-image confusion matrix stays on the rank that computed it (only the sum over
    the set is shared), so scores gathered on rank 0 carry an empty ``(0, 0)`` ``masks.confusion``.
    """

    pair: Pair
    values: dict[str, float]
    data_range: float | None = None
    masks: MaskStats | None = None


def score_arrays(
    pred: np.ndarray, gt: np.ndarray, settings: EvalSettings
) -> tuple[dict[str, float], float | None, MaskStats | None]:
    """Score one prediction against its ground truth (arrays as :func:`read_array` returns them).

    Returns the per-image values, the data range used for PSNR/SSIM, and the mask statistics.
    Alpha planes are left out of PSNR/SSIM: restoration keeps alpha untouched.
    """
    values: dict[str, float] = {}
    data_range: float | None = None
    if settings.image_metrics:
        pred_rgb, gt_rgb = split_alpha(pred)[0], split_alpha(gt)[0]
        if pred_rgb.shape != gt_rgb.shape:
            raise MetricError(f"Expected the same size and channels, but got {pred_rgb.shape} and {gt_rgb.shape}")
        if pred_rgb.dtype != gt_rgb.dtype:
            raise MetricError(f"Expected the same bit depth, but got {pred_rgb.dtype} and {gt_rgb.dtype}")
        data_range = settings.data_range if settings.data_range is not None else float(dtype_max(gt_rgb.dtype))
        values = quality_metrics(
            pred_rgb,
            gt_rgb,
            settings.image_metrics,
            data_range=data_range,
            crop_border=settings.crop_border,
            y_channel=settings.y_channel,
            round_y=settings.round_y,
        )
    stats: MaskStats | None = None
    if settings.mask_metrics:
        target = decode_target(gt, num_classes=settings.num_classes, ignore_index=settings.ignore_index)
        prediction = decode_prediction(pred, num_classes=settings.num_classes, threshold=settings.threshold)
        if prediction.shape != target.shape:
            raise MetricError(f"Expected masks of the same size, but got {prediction.shape} and {target.shape}")
        stats = mask_stats(
            prediction,
            target,
            num_classes=settings.num_classes,
            ignore_index=settings.ignore_index,
            distance=settings.distance,
        )
        per_image = {"miou": stats.miou, "niou": stats.niou, "pd": stats.detection.pd, "fa": stats.detection.fa}
        values.update((name, per_image[name]) for name in settings.mask_metrics)
    return values, data_range, stats


def score_pair(pair: Pair, settings: EvalSettings, transform: Transform | None = None) -> PairScore:
    """Read, optionally transform, and score one pair; errors name both files."""
    pred = read_array(pair.pred)
    if transform is not None:
        pred = transform(pair.pred, pred)
    gt = read_array(pair.gt)
    try:
        values, data_range, stats = score_arrays(pred, gt, settings)
    except MetricError as exc:
        raise MetricError(f"{exc} ({pair.pred} vs {pair.gt})") from exc
    return PairScore(pair, values, data_range, stats)


@dataclass(frozen=True)
class PairFailure:
    """A pair that could not be read or scored; the run goes on without it."""

    pair: Pair
    reason: str


def _score_or_failure(pair: Pair, settings: EvalSettings, transform: Transform | None) -> PairScore | PairFailure:
    try:
        return score_pair(pair, settings, transform)
    except RestoreError as exc:
        return PairFailure(pair, str(exc))


@dataclass
class _Totals:
    """Running aggregates: O(1) memory in the number of images."""

    settings: EvalSettings
    count: int = 0
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    psnr_inf: int = 0
    data_ranges: set[float] = field(default_factory=set)
    masks: MaskStats | None = None

    def add(self, score: PairScore) -> None:
        self.count += 1
        if score.data_range is not None:
            self.data_ranges.add(score.data_range)
        for name in self.settings.image_metrics:
            value = score.values[name]
            if name == "psnr" and math.isinf(value):
                self.psnr_inf += 1
                continue
            self.sums[name] = self.sums.get(name, 0.0) + value
            self.counts[name] = self.counts.get(name, 0) + 1
        if score.masks is not None:
            self.masks = score.masks if self.masks is None else self.masks + score.masks

    def summary(self) -> dict[str, float]:
        result: dict[str, float] = {}
        for name in self.settings.image_metrics:
            finite = self.counts.get(name, 0)
            if finite:
                result[name] = self.sums[name] / finite
            else:
                result[name] = math.inf if name == "psnr" and self.psnr_inf else math.nan
        if "psnr" in self.settings.image_metrics:
            result["psnr_inf"] = self.psnr_inf
        if self.masks is not None:
            detection = self.masks.detection
            overall = {"miou": self.masks.miou, "niou": self.masks.niou, "pd": detection.pd, "fa": detection.fa}
            result.update((name, overall[name]) for name in self.settings.mask_metrics)
            if {"pd", "fa"} & set(self.settings.mask_metrics):
                result.update(
                    targets=detection.targets,
                    detected=detection.detected,
                    false_alarm_pixels=detection.false_alarm_pixels,
                    pixels=detection.pixels,
                )
        return result


@dataclass(frozen=True)
class EvalReport:
    """Summary of a run. PSNR averages finite values; ``psnr_inf`` counts identical pairs left out."""

    settings: EvalSettings
    count: int
    summary: dict[str, float]
    convention: dict[str, object]
    class_iou: tuple[float, ...] = ()
    scores: tuple[PairScore, ...] = ()
    missing_gt: tuple[Path, ...] = ()
    missing_pred: tuple[Path, ...] = ()
    failures: tuple[PairFailure, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """Strict-JSON data (inf as the string ``"inf"``, NaN as None); per-image rows if they were kept."""
        result: dict[str, object] = {
            "convention": self.convention,
            "count": self.count,
            "summary": {key: _strict(value) for key, value in self.summary.items()},
        }
        if self.class_iou:
            result["class_iou"] = {str(index): _strict(value) for index, value in enumerate(self.class_iou)}
        result["unmatched"] = {
            "predictions_without_gt": [str(path) for path in self.missing_gt],
            "gt_without_prediction": [str(path) for path in self.missing_pred],
        }
        result["failed"] = [{"pred": str(f.pair.pred), "reason": f.reason} for f in self.failures]
        if self.scores:
            result["images"] = [_image_row(score) for score in self.scores]
        return result


def _image_row(score: PairScore) -> dict[str, object]:
    row: dict[str, object] = {"name": score.pair.name, "pred": str(score.pair.pred), "gt": str(score.pair.gt)}
    row.update((key, _strict(value)) for key, value in score.values.items())
    return row


def _strict(value: float) -> float | str | None:
    """JSON has no inf or NaN: inf -> "inf" (identical images), NaN -> None (undefined, e.g. PD without targets)."""
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


class _CsvRows:
    """Writes one CSV row per score as it arrives; the header comes from the first score."""

    def __init__(self, handle: TextIO) -> None:
        self._writer = csv.writer(handle)
        self._columns: list[str] | None = None

    def __call__(self, score: PairScore) -> None:
        if self._columns is None:
            self._columns = list(score.values)
            self._writer.writerow(["name", "pred", "gt", *self._columns])
        values = (repr(score.values[column]) for column in self._columns)
        self._writer.writerow([score.pair.name, score.pair.pred, score.pair.gt, *values])


def _init_worker() -> None:
    """One OpenCV thread per process: the pool already occupies the cores."""
    import cv2

    cv2.setNumThreads(1)


# Fresh interpreters, not fork: a forked child inherits the parent's native thread pools (OpenCV, BLAS,
# torch) mid-state; bench_eval.py deadlocked in the children after a scikit-image loop on 1 MP images.
_POOL_CONTEXT = "spawn"


def _scores(
    pairs: Sequence[Pair], settings: EvalSettings, workers: int, transform: Transform | None
) -> Iterator[PairScore | PairFailure]:
    """Scores (or failures) in pair order, from this process or from a pool."""
    score = partial(_score_or_failure, settings=settings, transform=transform)
    if workers <= 1 or transform is not None:
        yield from map(score, pairs)
        return
    context = multiprocessing.get_context(_POOL_CONTEXT)
    with context.Pool(processes=workers, initializer=_init_worker) as pool:
        yield from pool.imap(score, pairs, chunksize=1)


def resolve_workers(workers: int, jobs: int, sharing: int = 1) -> int:
    """0 means one per CPU core (split among ``sharing`` processes on this machine); never more than jobs."""
    if workers < 0:
        raise ConfigError(f"Expected workers >= 0, but got {workers}")
    wanted = workers or (os.cpu_count() or 1) // max(1, sharing)
    return max(1, min(wanted, jobs))


def _tracked(
    results: Iterable[PairScore | PairFailure], bar: JobProgress, label: str
) -> Iterator[PairScore | PairFailure]:
    """Pass ``results`` through, counting each on the bar and reporting each failure where it happened."""
    for result in results:
        bar.update()
        if isinstance(result, PairFailure):
            logger.warning("%sSkipped %s: %s", label, result.pair.pred, result.reason)
        yield result


def _aggregate(
    settings: EvalSettings,
    results: Iterable[PairScore | PairFailure],
    *,
    on_score: Callable[[PairScore], None] | None,
    keep_scores: bool,
    confusion: np.ndarray | None = None,
) -> EvalReport:
    """Fold scores, in pair order, into the report; ``confusion``: the set's matrix when summed elsewhere."""
    totals = _Totals(settings)
    kept: list[PairScore] = []
    failures: list[PairFailure] = []
    for result in results:
        if isinstance(result, PairFailure):
            failures.append(result)
            continue
        totals.add(result)
        if on_score is not None:
            on_score(result)
        if keep_scores:
            kept.append(result)
    if totals.count == 0:
        raise MetricError(f"Expected at least one scorable pair, but all {len(failures)} failed: {failures[0].reason}")
    masks = totals.masks
    if masks is not None and confusion is not None:
        masks = replace(masks, confusion=confusion)
        totals.masks = masks
    class_iou = (
        tuple(float(v) for v in masks.class_iou) if masks is not None and "miou" in settings.mask_metrics else ()
    )
    return EvalReport(
        settings=settings,
        count=totals.count,
        summary=totals.summary(),
        convention=settings.convention(sorted(totals.data_ranges)),
        class_iou=class_iou,
        scores=tuple(kept),
        failures=tuple(failures),
    )


def evaluate_pairs(
    pairs: Sequence[Pair],
    settings: EvalSettings,
    *,
    workers: int = 1,
    transform: Transform | None = None,
    progress: bool = False,
    on_score: Callable[[PairScore], None] | None = None,
    keep_scores: bool = False,
    session: Session | None = None,
) -> EvalReport:
    """Score every pair and aggregate by the reference protocols.

    Args:
        pairs: from :func:`match_pairs`.
        settings: metrics and conventions.
        workers: processes (0 = one per core); a ``transform`` always runs in this process.
        transform: applied to each prediction before scoring (on-the-fly restoration).
        progress: show a tqdm bar on stderr.
        on_score: called with each pair's score, in pair order (streaming CSV rows).
        keep_scores: also return every per-image score (memory grows with the set).
        session: this process's part in a torchrun job (default: a single process). A collective step:
            every rank passes the same ``pairs``, scores its share (``workers`` processes each) and
            returns the same report; ``on_score`` runs on rank 0 only, once every rank is done.
    """
    session = session or _single_process()
    if not pairs:
        raise MetricError("Expected at least one prediction/ground-truth pair, but got none")
    if settings.metrics is None:
        chosen = session.settle(
            lambda: default_metrics(pairs, num_classes=settings.num_classes, ignore_index=settings.ignore_index)
        )
        settings = replace(settings, metrics=chosen)
    bar = partial(session.progress, len(pairs), enabled=progress, unit="pair", desc="eval", leave=False)
    if not session.distributed:  # stream: memory stays flat in the number of pairs
        jobs = resolve_workers(workers, len(pairs))
        with bar() as counted:
            results = _tracked(_scores(pairs, settings, jobs, transform), counted, "")
            return _aggregate(settings, results, on_score=on_score, keep_scores=keep_scores)

    indices = session.shard(range(len(pairs)))

    def score_share() -> list[tuple[int, PairScore | PairFailure]]:
        with bar() as counted:  # entered first: every rank must reach its end, even after an error
            jobs = resolve_workers(workers, len(indices), sharing=session.context.local_world_size)
            results = _scores([pairs[index] for index in indices], settings, jobs, transform)
            return list(zip(indices, _tracked(results, counted, session.label), strict=True))

    share = session.settle(score_share)
    confusion = None
    if settings.mask_metrics:
        classes = settings.num_classes
        own = [result.masks.confusion for _, result in share if isinstance(result, PairScore) and result.masks]
        confusion = session.sum(sum(own, np.zeros((classes, classes), dtype=np.int64)))
    gathered = session.gather([(index, _without_confusion(result)) for index, result in share])

    def aggregate() -> EvalReport:
        in_order = sorted((item for items in gathered or () for item in items), key=lambda item: item[0])
        results = (result for _, result in in_order)
        return _aggregate(settings, results, on_score=on_score, keep_scores=keep_scores, confusion=confusion)

    return session.from_main(aggregate)


def _single_process() -> Session:
    """A one-process Session, imported late: the engine imports torch, which scoring workers never need."""
    from restorecli.engine.distributed import Session

    return Session()


def _without_confusion(result: PairScore | PairFailure) -> PairScore | PairFailure:
    """What a rank sends to rank 0: the per-image confusion matrix stays behind (its sum is all-reduced)."""
    if isinstance(result, PairFailure) or result.masks is None:
        return result
    return replace(result, masks=replace(result.masks, confusion=_NO_CONFUSION))


def evaluate_paths(
    pred: Path,
    gt: Path,
    settings: EvalSettings,
    *,
    gt_pattern: str = "{stem}",
    allow_missing: bool = False,
    csv_path: Path | None = None,
    workers: int = 1,
    transform: Transform | None = None,
    progress: bool = False,
    keep_scores: bool = False,
    session: Session | None = None,
) -> EvalReport:
    """Pair files or folders (:func:`match_pairs`) and :func:`evaluate_pairs` them.

    Unmatched files fail the run unless ``allow_missing``; then they are listed in the report.
    ``csv_path`` receives one row per pair, streamed as scores arrive and renamed into place at the end
    (under torchrun: written by rank 0 once the scores are gathered).
    ``pred`` holds the degraded inputs when a ``transform`` restores them on the fly.
    """
    session = session or _single_process()

    def pair() -> Pairing:
        pairing = match_pairs(pred, gt, gt_pattern=gt_pattern)
        if not allow_missing:
            pairing.require_complete()
        return pairing

    pairing = session.settle(pair)
    run = partial(
        evaluate_pairs,
        pairing.pairs,
        settings,
        workers=workers,
        transform=transform,
        progress=progress,
        keep_scores=keep_scores,
        session=session,
    )
    if csv_path is None or not session.is_main:
        report = run()
    else:
        with atomic_path(csv_path) as temp, temp.open("w", newline="") as handle:
            report = run(on_score=_CsvRows(handle))
    return replace(report, missing_gt=pairing.missing_gt, missing_pred=pairing.missing_pred)


def check_save_dir(save_dir: Path, *protected: Path) -> None:
    """Refuse a ``--save`` folder that is (or holds) the inputs or the ground truth: never overwrite them."""
    target = Path(save_dir).resolve()
    for path in protected:
        folder = Path(path).resolve()
        folder = folder if folder.is_dir() else folder.parent
        if target == folder:
            raise MetricError(f"Expected a --save folder other than {path}, but got {save_dir} (it would overwrite it)")


def restoring_transform(
    model: ModelDescriptor,
    *,
    tile: int | None = None,
    tile_overlap: int = 32,
    precision: str = "fp32",
    save_dir: Path | None = None,
) -> Transform:
    """A Transform that restores each degraded input with ``model`` (and saves ``<stem>.png`` if asked)."""
    from restorecli.api import restore_image

    def restore(source: Path, image: np.ndarray) -> np.ndarray:
        restored = restore_image(model, image, tile=tile, tile_overlap=tile_overlap, precision=precision)
        if save_dir is not None:
            write_array(Path(save_dir) / f"{source.stem}.png", restored)
        return restored

    return restore
