"""What an evaluation computes and by which convention: validated before any worker starts, printed with the results."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from restorecli.errors import ConfigError, ImageReadError
from restorecli.images import read_array
from restorecli.metrics.metric import METRICS
from restorecli.metrics.pairing import Pair
from restorecli.metrics.protocols import PROTOCOLS, get_protocol
from restorecli.metrics.segmentation import DEFAULT_DISTANCE, DEFAULT_IGNORE_INDEX, DEFAULT_THRESHOLD, looks_like_mask

METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
IMAGE_METRICS: tuple[str, ...] = ("psnr", "ssim")
MASK_METRICS: tuple[str, ...] = ("miou", "niou", "pd", "fa")
_REFERENCE = "BasicSR calculate_psnr / calculate_ssim (float64)"


def parse_metrics(text: str) -> tuple[str, ...]:
    """``"psnr,ssim"`` -> ``("psnr", "ssim")``; unknown names raise ConfigError."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        raise ConfigError(f"Expected metrics among {', '.join(METRIC_NAMES)}, but got {text!r}")
    return tuple(dict.fromkeys(names))  # keeps order, drops repeats


def default_metrics(
    pairs: Sequence[Pair], *, num_classes: int = 2, ignore_index: int = DEFAULT_IGNORE_INDEX
) -> tuple[str, ...]:
    """PSNR/SSIM for images, mIoU/nIoU/PD/FA when the first ground truth that decodes is a mask."""
    for pair in pairs:
        try:
            first = read_array(pair.gt)
        except ImageReadError:
            continue  # a broken file (a bomb) is reported once, when its pair is scored
        return (
            MASK_METRICS
            if looks_like_mask(first, num_classes=num_classes, ignore_index=ignore_index)
            else IMAGE_METRICS
        )
    return IMAGE_METRICS


@dataclass(frozen=True)
class EvalSettings:
    """What to compute and by which convention; printed with the results so numbers can be traced.

    ``metrics=None`` lets :func:`~restorecli.metrics.evaluate.evaluate_paths` choose from the first
    ground truth (masks or images). ``protocol`` names the paper preset these settings came from
    (:meth:`for_protocol`); it is reported, the other fields say what was computed.
    """

    metrics: tuple[str, ...] | None = IMAGE_METRICS
    crop_border: int = 0
    y_channel: bool = False
    round_y: bool = False
    data_range: float | None = None  # None: from the bit depth (255 or 65535)
    num_classes: int = 2
    ignore_index: int = DEFAULT_IGNORE_INDEX
    threshold: float = DEFAULT_THRESHOLD
    distance: float = DEFAULT_DISTANCE
    protocol: str | None = None

    def __post_init__(self) -> None:
        """Reject impossible settings before any worker starts."""
        checks = (
            (
                self.metrics is None or (bool(self.metrics) and set(self.metrics) <= set(METRICS)),
                f"metrics among {', '.join(METRIC_NAMES)}",
                self.metrics,
            ),
            (self.crop_border >= 0, "a crop border >= 0", self.crop_border),
            (self.data_range is None or self.data_range > 0, "a positive data range", self.data_range),
            (not self.round_y or self.y_channel, "round_y only together with y_channel", self.round_y),
            (
                not self.round_y or self.data_range is None or float(self.data_range) in (255.0, 65535.0),
                "an integer data range (255 or 65535) to round Y",
                self.data_range,
            ),
            (self.num_classes >= 2, "at least 2 classes", self.num_classes),
            (0.0 <= self.threshold < 1.0, "a threshold in [0, 1)", self.threshold),
            (self.distance > 0, "a positive centroid distance", self.distance),
            (self.protocol is None or self.protocol in PROTOCOLS, "a known protocol", self.protocol),
        )
        for ok, expected, got in checks:
            if not ok:
                raise ConfigError(f"Expected {expected}, but got {got}")

    @classmethod
    def for_protocol(cls, name: str, **others: object) -> EvalSettings:
        """The preset ``name``'s channel, crop and metrics, with ``others`` for the remaining fields."""
        preset = get_protocol(name)
        return cls(
            metrics=preset.metrics,
            crop_border=preset.crop_border,
            y_channel=preset.y_channel,
            round_y=preset.round_y,
            protocol=preset.name,
            **others,  # type: ignore[arg-type]  # the remaining fields, checked by __post_init__
        )

    @property
    def image_metrics(self) -> tuple[str, ...]:
        """The chosen metrics that score pixels (PSNR, SSIM...)."""
        return tuple(name for name in self.metrics or () if METRICS[name].kind == "image")

    @property
    def mask_metrics(self) -> tuple[str, ...]:
        """The chosen metrics that score masks (mIoU, PD...)."""
        return tuple(name for name in self.metrics or () if METRICS[name].kind == "mask")

    def convention(self, data_ranges: Sequence[float] = ()) -> dict[str, object]:
        """The exact protocol as plain data (JSON header); :func:`describe` renders it as one line."""
        result: dict[str, object] = {"metrics": list(self.metrics or ())}
        if self.protocol is not None:
            result.update(protocol=self.protocol, protocol_source=PROTOCOLS[self.protocol].source)
        if self.image_metrics:
            channel = "rgb"
            if self.y_channel:
                channel = "y-bt601-rounded" if self.round_y else "y-bt601"
            result.update(
                channel=channel,
                crop_border=self.crop_border,
                data_range=list(data_ranges) if self.data_range is None else [self.data_range],
                data_range_source="bit depth" if self.data_range is None else "option",
                reference=_REFERENCE,
            )
        if self.mask_metrics:
            result.update(
                num_classes=self.num_classes,
                ignore_index=self.ignore_index,
                threshold=self.threshold,
                distance=self.distance,
            )
        result.update((name, METRICS[name].convention) for name in self.metrics or ())
        return result


def describe(convention: dict[str, object]) -> str:
    """One human line for a table header, e.g. ``protocol=nafnet-sidd channel=rgb crop_border=0``."""
    keys = (
        "metrics",
        "protocol",
        "channel",
        "crop_border",
        "data_range",
        "num_classes",
        "ignore_index",
        "threshold",
        "distance",
    )

    def show(value: object) -> str:
        if isinstance(value, list):
            return ",".join(show(item) for item in value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    return " ".join(f"{key}={show(convention[key])}" for key in keys if key in convention)
