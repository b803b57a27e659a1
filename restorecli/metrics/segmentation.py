"""Mask metrics: mIoU from a confusion matrix, nIoU, and PD/FA for infrared small-target detection.

Conventions, with the reference each one reproduces:

- **mIoU**: one confusion matrix accumulated over the whole set (rows = ground truth, columns =
  prediction, pixels equal to ``ignore_index`` in the ground truth skipped), per-class
  IoU = TP / (TP + FP + FN), then the mean over the classes that occur in ground truth or prediction.
  For binary masks this is the mean of background and target IoU; the number IRSTD papers (ACM, DNANet)
  call "mIoU" is the accumulated *target* IoU, which is per-class IoU of class 1 here.
- **nIoU**: mean over images of the per-image foreground IoU (ACM's ``SamplewiseSigmoidMetric``,
  also used by DNANet): an image where neither mask has foreground scores 0, as ``inter / (union + eps)``
  gives there.
- **PD / FA**: DNANet's ``PD_FA``: 8-connected components (``skimage.measure.label(connectivity=2)``);
  ground-truth components in label order each take the *first* still unmatched predicted component (in
  label order) whose centroid lies closer than ``distance`` pixels (3 in DNANet, strict ``<``).
  PD = matched targets / all targets; FA = pixels of unmatched predicted components / all pixels, both
  summed over the set. DNANet's code drops an unmatched component whose area happens to equal that of
  a matched one (it compares areas by value); we count every unmatched component's pixels, as the
  definition says.

Masks are decoded once into integer labels (:func:`decode_target`, :func:`decode_prediction`), then the
metric functions work on labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from skimage import measure

from restorecli.errors import MetricError

DEFAULT_IGNORE_INDEX = 255
DEFAULT_THRESHOLD = 0.5
DEFAULT_DISTANCE = 3.0
_CONNECTIVITY = 2  # 8-neighbourhood in 2-D, as DNANet's measure.label(..., connectivity=2)


def _single_channel(mask: np.ndarray) -> np.ndarray:
    """``(H, W)``; also accepts ``(H, W, 1)`` and grey saved as RGB(A) (equal colour channels)."""
    mask = np.asarray(mask)
    if mask.ndim == 2:
        return mask
    if mask.ndim == 3 and mask.shape[2] == 1:
        return mask[:, :, 0]
    if mask.ndim == 3 and mask.shape[2] in (3, 4):
        first = mask[:, :, 0]
        if np.array_equal(first, mask[:, :, 1]) and np.array_equal(first, mask[:, :, 2]):
            return first
    raise MetricError(f"Expected a single-channel mask (or grey stored as RGB), but got shape {mask.shape}")


def _present_values(mask: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an unsigned integer or bool mask (bincount: faster than np.unique)."""
    if mask.dtype == np.bool_:
        mask = mask.view(np.uint8)
    return np.flatnonzero(np.bincount(mask.ravel()))


def _binary_extreme(mask: np.ndarray) -> int:
    """The 'white' value of a 0/white binary mask: 255 for uint8, 65535 for uint16, 1 otherwise."""
    return int(np.iinfo(mask.dtype).max) if mask.dtype.kind == "u" else 1


def decode_target(mask: np.ndarray, *, num_classes: int, ignore_index: int = DEFAULT_IGNORE_INDEX) -> np.ndarray:
    """Ground-truth mask -> ``(H, W)`` int64 labels in ``[0, num_classes)`` or ``ignore_index``.

    With ``num_classes == 2`` a mask holding only 0 and the dtype's white (255 / 65535) is a binary
    0/255 mask: white is the target, and nothing is ignored (255 would otherwise collide with the
    default ignore index). Every other mask is an index mask: the value is the class, ``ignore_index``
    marks pixels left out of every metric.
    """
    _check_classes(num_classes)
    mask = _single_channel(mask)
    if mask.dtype != np.bool_ and mask.dtype.kind != "u":
        raise MetricError(f"Expected a ground-truth mask of unsigned integers or bools, but got {mask.dtype}")
    values = _present_values(mask)
    if num_classes == 2 and np.isin(values, (0, _binary_extreme(mask))).all():
        return (mask > 0).astype(np.int64)
    bad = values[(values >= num_classes) & (values != ignore_index)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:5])
        raise MetricError(
            f"Expected ground-truth class indices below num_classes={num_classes} "
            f"(or {ignore_index} = ignore), but got {shown}"
        )
    return mask.astype(np.int64)


def looks_like_mask(image: np.ndarray, *, num_classes: int = 2, ignore_index: int = DEFAULT_IGNORE_INDEX) -> bool:
    """True when ``image`` decodes as a ground-truth mask (:func:`decode_target`): picks mask metrics.

    Stored single-channel, with only 0 and white (binary) or only class indices below ``num_classes``
    and the ignore index; a photo, even a dark or constant one, has other values.
    """
    if np.ndim(image) != 2:
        return False
    try:
        decode_target(image, num_classes=num_classes, ignore_index=ignore_index)
    except MetricError:
        return False
    return True


def decode_prediction(mask: np.ndarray, *, num_classes: int, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """Predicted mask -> ``(H, W)`` int64 labels in ``[0, num_classes)``.

    Binary (``num_classes == 2``): a 0/1 mask is taken as labels; anything else is a probability map
    scaled to the dtype's range (255, 65535, or 1.0 for floats) and the target is
    ``value > threshold * range`` (DNANet/ACM threshold logits at 0, i.e. probability 0.5).
    Multi-class: unsigned integer class indices, each below ``num_classes``.
    """
    _check_classes(num_classes)
    if not 0.0 <= threshold < 1.0:
        raise MetricError(f"Expected a threshold in [0, 1), but got {threshold}")
    mask = _single_channel(mask)
    if mask.dtype == np.bool_:
        return mask.astype(np.int64)
    if num_classes == 2:
        if mask.dtype.kind not in "uif":
            raise MetricError(f"Expected numeric prediction pixels, but got {mask.dtype}")
        if ((mask == 0) | (mask == 1)).all():
            return mask.astype(np.int64)
        scale = float(np.iinfo(mask.dtype).max) if mask.dtype.kind in "ui" else 1.0
        return (mask > threshold * scale).astype(np.int64)
    if mask.dtype.kind != "u":
        raise MetricError(f"Expected unsigned integer class indices in the prediction, but got {mask.dtype}")
    values = _present_values(mask)
    if values[-1] >= num_classes:
        raise MetricError(f"Expected predicted class indices below {num_classes}, but got {values[-1]}")
    return mask.astype(np.int64)


def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, *, num_classes: int, ignore_index: int = DEFAULT_IGNORE_INDEX
) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 pixel counts; rows = ground truth, columns = prediction.

    Pixels whose target equals ``ignore_index`` are skipped. Inputs are integer labels of equal shape.
    """
    _check_classes(num_classes)
    pred, target = _same_shape(pred, target)
    valid = target != ignore_index
    target_valid = target[valid].astype(np.int64)
    pred_valid = pred[valid].astype(np.int64)
    for name, labels in (("target", target_valid), ("prediction", pred_valid)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise MetricError(f"Expected {name} labels in [0, {num_classes}), but got {labels.min()}..{labels.max()}")
    counts = np.bincount(target_valid * num_classes + pred_valid, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """IoU = TP / (TP + FP + FN) for each class; NaN for a class absent from both GT and prediction."""
    confusion = np.asarray(confusion, dtype=np.float64)
    intersection = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean IoU over the classes present in GT or prediction; NaN when there are none."""
    ious = iou_per_class(confusion)
    present = ious[~np.isnan(ious)]
    return float(present.mean()) if present.size else float("nan")


def foreground_iou(pred: np.ndarray, target: np.ndarray, *, ignore_index: int = DEFAULT_IGNORE_INDEX) -> float:
    """One image's IoU of foreground (every label but 0) against background; 0 when both are empty.

    The per-image term of nIoU (ACM's ``SamplewiseSigmoidMetric``), ignored pixels left out.
    """
    pred, target = _same_shape(pred, target)
    valid = target != ignore_index
    pred_fg = (pred != 0) & valid
    target_fg = (target != 0) & valid
    union = int(np.count_nonzero(pred_fg | target_fg))
    if union == 0:
        return 0.0
    return int(np.count_nonzero(pred_fg & target_fg)) / union


@dataclass(frozen=True)
class DetectionCounts:
    """Counts behind PD and FA; they add up over images, which is how DNANet accumulates them."""

    targets: int = 0
    detected: int = 0
    false_alarm_pixels: int = 0
    pixels: int = 0

    def __add__(self, other: DetectionCounts) -> DetectionCounts:
        return DetectionCounts(
            self.targets + other.targets,
            self.detected + other.detected,
            self.false_alarm_pixels + other.false_alarm_pixels,
            self.pixels + other.pixels,
        )

    @property
    def pd(self) -> float:
        """Probability of detection: detected / targets (NaN without targets)."""
        return self.detected / self.targets if self.targets else float("nan")

    @property
    def fa(self) -> float:
        """False-alarm rate: false-alarm pixels / all pixels (papers print it times 1e6)."""
        return self.false_alarm_pixels / self.pixels if self.pixels else float("nan")


@dataclass(frozen=True)
class TargetMatch:
    """Which ground-truth targets a prediction found: the per-target view behind PD and FA.

    Attributes:
        centroids: ``(row, col)`` of each ground-truth target.
        detected: per target, whether a predicted component matched it.
        false_alarm_pixels: pixels of predicted components that matched no target.
        pixels: pixels that count (the ignored ones left out).
    """

    centroids: tuple[tuple[float, float], ...]
    detected: tuple[bool, ...]
    false_alarm_pixels: int
    pixels: int

    def counts(self) -> DetectionCounts:
        return DetectionCounts(len(self.detected), sum(self.detected), self.false_alarm_pixels, self.pixels)


def match_targets(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    distance: float = DEFAULT_DISTANCE,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
) -> TargetMatch:
    """Match predicted to ground-truth connected components by centroid distance (DNANet ``PD_FA``).

    Each target takes the first unused predicted component whose centroid is closer than
    ``distance``. Every non-zero label is foreground. Ignored ground-truth pixels belong to neither
    mask and are not counted in ``pixels``.
    """
    if not distance > 0:
        raise MetricError(f"Expected a positive centroid distance, but got {distance}")
    pred, target = _same_shape(pred, target)
    valid = target != ignore_index
    pred_regions = measure.regionprops(measure.label((pred != 0) & valid, connectivity=_CONNECTIVITY))
    target_regions = measure.regionprops(measure.label((target != 0) & valid, connectivity=_CONNECTIVITY))
    areas = np.array([region.area for region in pred_regions], dtype=np.int64)
    centroids = np.array([region.centroid for region in pred_regions], dtype=np.float64).reshape(-1, 2)
    unmatched = np.ones(len(pred_regions), dtype=bool)
    detected = []
    for region in target_regions:
        gaps = np.linalg.norm(centroids - np.asarray(region.centroid), axis=1)
        candidates = np.flatnonzero(unmatched & (gaps < distance))
        if candidates.size:
            unmatched[candidates[0]] = False
        detected.append(bool(candidates.size))
    return TargetMatch(
        centroids=tuple((float(r.centroid[0]), float(r.centroid[1])) for r in target_regions),
        detected=tuple(detected),
        false_alarm_pixels=int(areas[unmatched].sum()),
        pixels=int(np.count_nonzero(valid)),
    )


def detect_targets(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    distance: float = DEFAULT_DISTANCE,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
) -> DetectionCounts:
    """The PD/FA counts of :func:`match_targets`, which add up over images."""
    return match_targets(pred, target, distance=distance, ignore_index=ignore_index).counts()


@dataclass(frozen=True)
class MaskStats:
    """Everything the mask metrics need from one image or, summed with ``+``, from a whole set."""

    confusion: np.ndarray
    iou_sum: float = 0.0
    images: int = 0
    detection: DetectionCounts = field(default_factory=DetectionCounts)

    @classmethod
    def empty(cls, num_classes: int) -> MaskStats:
        """The neutral element of ``+`` (no images yet)."""
        return cls(confusion=np.zeros((num_classes, num_classes), dtype=np.int64))

    def __add__(self, other: MaskStats) -> MaskStats:
        return MaskStats(
            confusion=self.confusion + other.confusion,
            iou_sum=self.iou_sum + other.iou_sum,
            images=self.images + other.images,
            detection=self.detection + other.detection,
        )

    @property
    def miou(self) -> float:
        """Mean IoU of the accumulated confusion matrix."""
        return mean_iou(self.confusion)

    @property
    def niou(self) -> float:
        """Mean per-image foreground IoU (NaN before any image)."""
        return self.iou_sum / self.images if self.images else float("nan")

    @property
    def class_iou(self) -> np.ndarray:
        """Per-class IoU of the accumulated confusion matrix (NaN for absent classes)."""
        return iou_per_class(self.confusion)


def mask_stats(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    num_classes: int,
    ignore_index: int = DEFAULT_IGNORE_INDEX,
    distance: float = DEFAULT_DISTANCE,
) -> MaskStats:
    """One image's contribution to mIoU, nIoU, PD and FA, from decoded label arrays."""
    return MaskStats(
        confusion=confusion_matrix(pred, target, num_classes=num_classes, ignore_index=ignore_index),
        iou_sum=foreground_iou(pred, target, ignore_index=ignore_index),
        images=1,
        detection=detect_targets(pred, target, distance=distance, ignore_index=ignore_index),
    )


def _check_classes(num_classes: int) -> None:
    if num_classes < 2:
        raise MetricError(f"Expected at least 2 classes (background and target), but got {num_classes}")


def _same_shape(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 2:
        raise MetricError(
            f"Expected two (H, W) label arrays of the same shape, but got {pred.shape} and {target.shape}"
        )
    return pred, target
