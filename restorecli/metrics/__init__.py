"""Image-quality and mask metrics reproducing the reference evaluation code (BasicSR, NAFNet, ACM, DNANet).

Nothing here imports the engine, the zoo or the API: on-the-fly restoration reaches the metrics as a
plain :data:`Transform` that the caller builds.
"""

from __future__ import annotations

from restorecli.metrics.evaluate import evaluate_pairs, evaluate_paths
from restorecli.metrics.metric import METRICS, Metric, MetricSet, Sample
from restorecli.metrics.pairing import Pair, Pairing, match_pairs
from restorecli.metrics.protocols import PROTOCOLS, Protocol
from restorecli.metrics.psnr_ssim import psnr, rgb_to_y, ssim, ssim3d
from restorecli.metrics.results import EvalReport
from restorecli.metrics.scoring import PairScore, Transform
from restorecli.metrics.segmentation import (
    DetectionCounts,
    MaskStats,
    confusion_matrix,
    decode_prediction,
    decode_target,
    detect_targets,
    foreground_iou,
    iou_per_class,
    mask_stats,
    mean_iou,
)
from restorecli.metrics.settings import EvalSettings, parse_metrics

__all__ = [
    "METRICS",
    "PROTOCOLS",
    "DetectionCounts",
    "EvalReport",
    "EvalSettings",
    "MaskStats",
    "Metric",
    "MetricSet",
    "Pair",
    "PairScore",
    "Pairing",
    "Protocol",
    "Sample",
    "Transform",
    "confusion_matrix",
    "decode_prediction",
    "decode_target",
    "detect_targets",
    "evaluate_pairs",
    "evaluate_paths",
    "foreground_iou",
    "iou_per_class",
    "mask_stats",
    "match_pairs",
    "mean_iou",
    "parse_metrics",
    "psnr",
    "rgb_to_y",
    "ssim",
    "ssim3d",
]
