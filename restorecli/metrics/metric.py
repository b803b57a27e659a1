"""Metrics as small objects with declared state: ``update`` per pair, ``merge`` across workers and ranks, ``compute``.

torchmetrics' idea, without torch: a metric declares its running state and how two states combine
(a sum, or a union); ``merge`` folds another worker's or rank's metric into this one, so
the process pool, torchrun and the report all go through the same three methods. Adding a metric means
one class here and one line in :data:`METRICS`.

Every reduction is exact, which keeps results independent of how the pairs were split: counts and
confusion matrices are integers, and float sums are kept as :class:`ExactSum` (Shewchuk's partials,
rounded once by :func:`math.fsum`), so a mean over one process equals the mean over any sharding, bit
for bit. Aggregation follows the reference protocols: PSNR and SSIM are means of per-image values
(BasicSR, the Restormer/NAFNet scripts); mIoU and PD/FA come from counts summed over the set (DNANet);
nIoU is the mean of per-image IoU (ACM).
"""

from __future__ import annotations

import math
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from restorecli.errors import MetricError
from restorecli.images import dtype_max, split_alpha
from restorecli.metrics.psnr_ssim import (
    prepare_pair,
    psnr_of_prepared,
    skimage_ssim_of_prepared,
    ssim3d_of_prepared,
    ssim_of_prepared,
)
from restorecli.metrics.segmentation import (
    DetectionCounts,
    confusion_matrix,
    decode_prediction,
    decode_target,
    detect_targets,
    foreground_iou,
    iou_per_class,
    mean_iou,
)

if TYPE_CHECKING:
    from restorecli.metrics.settings import EvalSettings

_REDUCE = "reduce"
# A metric declares each field of its running state as a dataclass field whose metadata names how
# Metric.merge combines two values, and whose default_factory makes the empty state (the neutral
# element of that reduction): torchmetrics' add_state(name, default, dist_reduce_fx).
SUMMED: Mapping[str, Callable[[Any, Any], Any]] = {_REDUCE: operator.add}
UNITED: Mapping[str, Callable[[Any, Any], Any]] = {_REDUCE: operator.or_}


@dataclass
class ExactSum:
    """A float sum kept as non-overlapping partials (Shewchuk), so the total does not depend on the order.

    ``value`` is the correctly rounded sum of every value added, whichever worker added it first.
    """

    partials: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        """Add one finite value."""
        kept: list[float] = []
        for partial in self.partials:
            if abs(value) < abs(partial):
                value, partial = partial, value
            high = value + partial
            low = partial - (high - value)
            if low:
                kept.append(low)
            value = high
        kept.append(value)
        self.partials = kept

    def __add__(self, other: ExactSum) -> ExactSum:
        total = ExactSum(list(self.partials))
        for partial in other.partials:
            total.add(partial)
        return total

    @property
    def value(self) -> float:
        """The sum, rounded once."""
        return math.fsum(self.partials)


class Sample:
    """One prediction/ground-truth pair, prepared lazily and once for every metric that reads it.

    PSNR and SSIM read :attr:`images` (alpha dropped, cropped, optionally Y, float64); the mask metrics
    read :attr:`labels` and :attr:`detection`. Preparing once keeps a PSNR+SSIM or PD+FA run from
    converting or labelling the same pixels twice.
    """

    def __init__(self, pred: np.ndarray, target: np.ndarray, settings: EvalSettings) -> None:
        self.pred = pred
        self.target = target
        self.settings = settings

    @cached_property
    def data_range(self) -> float:
        """White: the settings' value, else the ground truth's bit depth (255 or 65535)."""
        if self.settings.data_range is not None:
            return self.settings.data_range
        return float(dtype_max(split_alpha(self.target)[0].dtype))

    @cached_property
    def images(self) -> tuple[np.ndarray, np.ndarray]:
        """The colour planes of both images as :func:`~restorecli.metrics.psnr_ssim.prepare_pair` returns them.

        Alpha planes are left out: restoration keeps alpha untouched.
        """
        pred, target = split_alpha(self.pred)[0], split_alpha(self.target)[0]
        if pred.shape != target.shape:
            raise MetricError(f"Expected the same size and channels, but got {pred.shape} and {target.shape}")
        if pred.dtype != target.dtype:
            raise MetricError(f"Expected the same bit depth, but got {pred.dtype} and {target.dtype}")
        settings = self.settings
        return prepare_pair(
            pred,
            target,
            data_range=self.data_range,
            crop_border=settings.crop_border,
            y_channel=settings.y_channel,
            round_y=settings.round_y,
        )

    @cached_property
    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Predicted and ground-truth class labels ``(H, W)``."""
        settings = self.settings
        target = decode_target(self.target, num_classes=settings.num_classes, ignore_index=settings.ignore_index)
        prediction = decode_prediction(self.pred, num_classes=settings.num_classes, threshold=settings.threshold)
        if prediction.shape != target.shape:
            raise MetricError(f"Expected masks of the same size, but got {prediction.shape} and {target.shape}")
        return prediction, target

    @cached_property
    def detection(self) -> DetectionCounts:
        """This pair's target and false-alarm counts (DNANet's PD_FA matching)."""
        prediction, target = self.labels
        settings = self.settings
        return detect_targets(prediction, target, distance=settings.distance, ignore_index=settings.ignore_index)


@dataclass
class Metric(ABC):
    """One metric's running state over a set of pairs.

    Subclasses declare their state as fields with :data:`SUMMED` or :data:`UNITED` metadata and set
    ``name`` and ``kind``; merging and the empty state follow from the declarations.
    """

    name: ClassVar[str]
    kind: ClassVar[str]  # "image" (PSNR/SSIM conventions) or "mask"
    convention: ClassVar[str]  # what it reproduces, for the report's header
    digits: ClassVar[str] = ".4f"  # how tables print it
    display_scale: ClassVar[float] = 1.0  # tables print value x scale...
    display_unit: ClassVar[str] = ""  # ...under the header name + unit

    @classmethod
    def for_settings(cls, settings: EvalSettings) -> Metric:
        """An empty metric for ``settings`` (the state of no pairs)."""
        del settings  # most metrics take their conventions from the Sample
        return cls()

    @abstractmethod
    def update(self, sample: Sample) -> float:
        """Fold one pair into the state and return its per-image value (NaN where undefined)."""

    @abstractmethod
    def compute(self) -> float:
        """The value over every pair folded in so far."""

    def counts(self) -> dict[str, float]:
        """Counts reported beside the value (e.g. identical pairs, targets); none by default."""
        return {}

    def merge(self, other: Metric) -> None:
        """Fold ``other``'s state (another worker's or rank's) into this one, by each field's reduction."""
        if type(other) is not type(self):
            raise MetricError(f"Expected a {type(self).__name__} to merge, but got {type(other).__name__}")
        for item in fields(self):
            if _REDUCE in item.metadata:
                merged = item.metadata[_REDUCE](getattr(self, item.name), getattr(other, item.name))
                setattr(self, item.name, merged)


@dataclass
class _Mean(Metric):
    """Mean over images of a per-image value (NaN before any image)."""

    total: ExactSum = field(default_factory=ExactSum, metadata=SUMMED)
    images: int = field(default=0, metadata=SUMMED)

    def _add(self, value: float) -> None:
        self.total.add(value)
        self.images += 1

    def compute(self) -> float:
        return self.total.value / self.images if self.images else math.nan


@dataclass
class _ImageMean(_Mean):
    """Mean over images of a per-image score of the prepared pixels; records the data ranges it used."""

    kind: ClassVar[str] = "image"
    score: ClassVar[Callable[[np.ndarray, np.ndarray, float], float]]
    data_ranges: frozenset[float] = field(default=frozenset(), metadata=UNITED)

    def update(self, sample: Sample) -> float:
        value = type(self).score(*sample.images, sample.data_range)
        self.data_ranges = self.data_ranges | {sample.data_range}
        self._add(value)
        return value


@dataclass
class PSNR(_ImageMean):
    """Mean PSNR in dB (BasicSR ``calculate_psnr``); identical pairs (inf) are counted apart."""

    name: ClassVar[str] = "psnr"
    convention: ClassVar[str] = "BasicSR calculate_psnr (float64), mean over images; identical pairs counted apart"
    score = staticmethod(psnr_of_prepared)
    infinite: int = field(default=0, metadata=SUMMED)

    def _add(self, value: float) -> None:
        if math.isinf(value):
            self.infinite += 1
        else:
            super()._add(value)

    def compute(self) -> float:
        if not self.images and self.infinite:
            return math.inf
        return super().compute()

    def counts(self) -> dict[str, float]:
        return {"psnr_inf": self.infinite}


@dataclass
class SSIM(_ImageMean):
    """Mean SSIM as BasicSR ``calculate_ssim`` and Wang et al.'s MATLAB ``ssim_index``."""

    name: ClassVar[str] = "ssim"
    digits: ClassVar[str] = ".6f"
    convention: ClassVar[str] = "gaussian 11x11 sigma 1.5, K1 0.01, K2 0.03, valid region, mean over channels"
    score = staticmethod(ssim_of_prepared)


@dataclass
class SSIM3D(_ImageMean):
    """Mean 3-D SSIM: NAFNet's ``calculate_ssim(ssim3d=True)``, MATLAB ``ssim`` on RGB arrays."""

    name: ClassVar[str] = "ssim3d"
    digits: ClassVar[str] = ".6f"
    convention: ClassVar[str] = (
        "gaussian 11x11x11 sigma 1.5 over height, width and channel, K1 0.01, K2 0.03, replicate padding, "
        "mean over the whole volume (NAFNet ssim3d, MATLAB ssim on RGB arrays)"
    )
    score = staticmethod(ssim3d_of_prepared)


@dataclass
class SSIMSkimage(_ImageMean):
    """Mean SSIM by scikit-image's defaults (Restormer's defocus-deblurring evaluation)."""

    name: ClassVar[str] = "ssim-skimage"
    digits: ClassVar[str] = ".6f"
    convention: ClassVar[str] = (
        "scikit-image structural_similarity defaults: 7x7 uniform window, sample covariance, mean over channels"
    )
    score = staticmethod(skimage_ssim_of_prepared)


@dataclass
class MeanIoU(Metric):
    """mIoU of one confusion matrix summed over the set (rows = ground truth), mean over classes present."""

    name: ClassVar[str] = "miou"
    kind: ClassVar[str] = "mask"
    convention: ClassVar[str] = "confusion matrix summed over the set, mean over classes present"
    num_classes: int = 2
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64), metadata=SUMMED)

    def __post_init__(self) -> None:
        if not self.confusion.size:
            self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    @classmethod
    def for_settings(cls, settings: EvalSettings) -> Metric:
        return cls(num_classes=settings.num_classes)

    def update(self, sample: Sample) -> float:
        prediction, target = sample.labels
        ignore = sample.settings.ignore_index
        counts = confusion_matrix(prediction, target, num_classes=self.num_classes, ignore_index=ignore)
        self.confusion = self.confusion + counts
        return mean_iou(counts)

    def compute(self) -> float:
        return mean_iou(self.confusion)

    @property
    def class_iou(self) -> tuple[float, ...]:
        """Per-class IoU of the summed matrix (NaN for classes absent from both sides)."""
        return tuple(float(value) for value in iou_per_class(self.confusion))


@dataclass
class NormalizedIoU(_Mean):
    """nIoU: mean over images of the per-image foreground IoU (ACM ``SamplewiseSigmoidMetric``)."""

    name: ClassVar[str] = "niou"
    kind: ClassVar[str] = "mask"
    convention: ClassVar[str] = "mean of per-image foreground IoU (ACM)"

    def update(self, sample: Sample) -> float:
        prediction, target = sample.labels
        value = foreground_iou(prediction, target, ignore_index=sample.settings.ignore_index)
        self._add(value)
        return value


@dataclass
class _Detection(Metric):
    """PD and FA share DNANet's counts, summed over the set, and both report them."""

    kind: ClassVar[str] = "mask"
    counted: DetectionCounts = field(default_factory=DetectionCounts, metadata=SUMMED)

    def update(self, sample: Sample) -> float:
        self.counted = self.counted + sample.detection
        return self.of(sample.detection)

    def compute(self) -> float:
        return self.of(self.counted)

    @staticmethod
    @abstractmethod
    def of(counts: DetectionCounts) -> float:
        """The rate these counts give."""

    def counts(self) -> dict[str, float]:
        counted = self.counted
        return {
            "targets": counted.targets,
            "detected": counted.detected,
            "false_alarm_pixels": counted.false_alarm_pixels,
            "pixels": counted.pixels,
        }


@dataclass
class ProbabilityOfDetection(_Detection):
    """PD = detected targets / targets (8-connected components matched by centroid distance)."""

    name: ClassVar[str] = "pd"
    convention: ClassVar[str] = "8-connected components, matched by centroid distance (DNANet)"

    @staticmethod
    def of(counts: DetectionCounts) -> float:
        return counts.pd


@dataclass
class FalseAlarmRate(_Detection):
    """FA = pixels of unmatched predicted components / all pixels (DNANet)."""

    name: ClassVar[str] = "fa"
    convention: ClassVar[str] = "unmatched predicted component pixels per pixel (DNANet)"
    digits: ClassVar[str] = ".3f"
    display_scale: ClassVar[float] = 1e6  # papers print FA in units of 1e-6
    display_unit: ClassVar[str] = "(x1e-6)"

    @staticmethod
    def of(counts: DetectionCounts) -> float:
        return counts.fa


METRICS: Mapping[str, type[Metric]] = {
    metric.name: metric
    for metric in (PSNR, SSIM, SSIM3D, SSIMSkimage, MeanIoU, NormalizedIoU, ProbabilityOfDetection, FalseAlarmRate)
}
"""Every metric ``restore eval`` knows, by the name ``--metrics`` takes; the one place to add one."""


class MetricSet:
    """The metrics of one run, updated together per pair and merged together; also counts the pairs."""

    def __init__(self, metrics: Sequence[Metric]) -> None:
        self.metrics: dict[str, Metric] = {metric.name: metric for metric in metrics}
        self.pairs = 0

    @classmethod
    def for_settings(cls, settings: EvalSettings) -> MetricSet:
        """Empty metrics named by ``settings.metrics``, in that order."""
        return cls([METRICS[name].for_settings(settings) for name in settings.metrics or ()])

    def update(self, sample: Sample) -> dict[str, float]:
        """Fold one pair into every metric; its per-image values by metric name."""
        values = {name: metric.update(sample) for name, metric in self.metrics.items()}
        self.pairs += 1
        return values

    def merge(self, other: MetricSet) -> None:
        """Fold another worker's or rank's metrics into these (the same names, from the same settings)."""
        if list(other.metrics) != list(self.metrics):
            raise MetricError(f"Expected metrics {list(self.metrics)} to merge, but got {list(other.metrics)}")
        for name, metric in self.metrics.items():
            metric.merge(other.metrics[name])
        self.pairs += other.pairs

    def compute(self) -> dict[str, float]:
        """Each metric's value, then the counts reported beside them."""
        result: dict[str, float] = {name: metric.compute() for name, metric in self.metrics.items()}
        for metric in self.metrics.values():
            result.update(metric.counts())
        return result

    def data_ranges(self) -> list[float]:
        """The data ranges the image metrics used, sorted (one per bit depth met)."""
        seen: set[float] = set()
        for metric in self.metrics.values():
            if isinstance(metric, _ImageMean):
                seen |= metric.data_ranges
        return sorted(seen)

    def class_iou(self) -> tuple[float, ...]:
        """Per-class IoU when mIoU is among the metrics, else empty."""
        metric = self.metrics.get(MeanIoU.name)
        return metric.class_iou if isinstance(metric, MeanIoU) else ()
