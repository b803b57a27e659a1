"""Image-quality and mask metrics reproducing the reference evaluation code (BasicSR, ACM, DNANet)."""

from __future__ import annotations

from restorecli.metrics.evaluate import (
    EvalReport,
    EvalSettings,
    PairScore,
    evaluate_pairs,
    evaluate_paths,
    parse_metrics,
    restoring_transform,
)
from restorecli.metrics.pairing import Pair, Pairing, match_pairs
from restorecli.metrics.psnr_ssim import psnr, rgb_to_y, ssim
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

__all__ = [
    "DetectionCounts",
    "EvalReport",
    "EvalSettings",
    "MaskStats",
    "Pair",
    "PairScore",
    "Pairing",
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
    "restoring_transform",
    "rgb_to_y",
    "ssim",
]
