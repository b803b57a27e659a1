"""Mask metrics on hand-counted masks, synthetic blobs, and an independent DNANet-style reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from restorecli.errors import MetricError
from restorecli.metrics import (
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
from restorecli.metrics.segmentation import looks_like_mask

TARGET_3 = np.array([[0, 0, 1], [1, 2, 2], [255, 2, 0]])
PRED_3 = np.array([[0, 1, 1], [1, 2, 0], [2, 2, 0]])


def test_three_class_confusion_matrix_is_hand_counted() -> None:
    expected = np.array([[2, 1, 0], [0, 2, 0], [1, 0, 2]])  # rows: GT, columns: prediction; 255 ignored
    confusion = confusion_matrix(PRED_3, TARGET_3, num_classes=3)
    np.testing.assert_array_equal(confusion, expected)
    np.testing.assert_allclose(iou_per_class(confusion), [2 / 4, 2 / 3, 2 / 3])
    assert mean_iou(confusion) == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)


def test_absent_classes_do_not_count_in_the_mean() -> None:
    confusion = confusion_matrix(PRED_3, TARGET_3, num_classes=4)
    assert math.isnan(iou_per_class(confusion)[3])
    assert mean_iou(confusion) == pytest.approx((0.5 + 2 / 3 + 2 / 3) / 3)
    assert math.isnan(mean_iou(np.zeros((2, 2), np.int64)))


def test_binary_masks_decode_from_0_255_0_1_bool_and_16_bit() -> None:
    labels = np.array([[0, 1], [1, 0]])
    for mask in (
        labels.astype(np.uint8) * 255,
        labels.astype(np.uint8),
        labels.astype(bool),
        labels.astype(np.uint16) * 65535,
    ):
        np.testing.assert_array_equal(decode_target(mask, num_classes=2), labels)


def test_255_is_ignore_in_0_1_masks_but_target_in_0_255_masks() -> None:
    with_ignore = np.array([[0, 1], [255, 0]], np.uint8)
    np.testing.assert_array_equal(decode_target(with_ignore, num_classes=2), with_ignore)
    confusion = confusion_matrix(np.array([[0, 1], [1, 0]]), decode_target(with_ignore, num_classes=2), num_classes=2)
    assert confusion.sum() == 3
    np.testing.assert_array_equal(decode_target(np.array([[0, 255]], np.uint8), num_classes=2), [[0, 1]])


def test_grey_mask_stored_as_rgb_is_accepted() -> None:
    mask = np.array([[0, 255], [255, 0]], np.uint8)
    np.testing.assert_array_equal(decode_target(np.dstack([mask] * 3), num_classes=2), mask // 255)


def test_predictions_threshold_probability_maps() -> None:
    probabilities = np.array([[0, 100, 127, 128, 200, 255]], np.uint8)
    np.testing.assert_array_equal(decode_prediction(probabilities, num_classes=2), [[0, 0, 0, 1, 1, 1]])
    np.testing.assert_array_equal(decode_prediction(probabilities, num_classes=2, threshold=0.3), [[0, 1, 1, 1, 1, 1]])
    floats = np.array([[0.2, 0.5, 0.6]])
    np.testing.assert_array_equal(decode_prediction(floats, num_classes=2), [[0, 0, 1]])
    np.testing.assert_array_equal(decode_prediction(np.array([[0, 1]], np.uint8), num_classes=2), [[0, 1]])


def test_out_of_range_classes_and_colour_masks_are_errors() -> None:
    with pytest.raises(MetricError, match="below num_classes=2"):
        decode_target(np.array([[0, 1, 2]], np.uint8), num_classes=2)
    with pytest.raises(MetricError, match="below 3"):
        decode_prediction(np.array([[0, 3]], np.uint8), num_classes=3)
    with pytest.raises(MetricError, match="single-channel"):
        decode_target(np.arange(12, dtype=np.uint8).reshape(2, 2, 3), num_classes=2)
    with pytest.raises(MetricError, match="same shape"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), num_classes=2)


def test_looks_like_mask() -> None:
    assert looks_like_mask(np.array([[0, 255]], np.uint8))
    assert looks_like_mask(np.array([[0, 1, 2, 255]], np.uint8), num_classes=3)
    assert not looks_like_mask(np.array([[0, 1, 2, 255]], np.uint8))  # 3 classes need num_classes=3
    assert not looks_like_mask(np.full((8, 8), 7, np.uint8))  # a dark constant photo
    assert not looks_like_mask(np.arange(256, dtype=np.uint8).reshape(16, 16))
    assert not looks_like_mask(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    assert not looks_like_mask(np.zeros((8, 8, 3), np.uint8))  # a black photo, not a mask saved as RGB


def test_foreground_iou_and_niou_versus_accumulated_iou() -> None:
    first_gt = np.zeros((6, 6), np.int64)
    first_gt[1:3, 1:3] = 1  # 4 target pixels
    first_pred = np.zeros_like(first_gt)
    first_pred[1, 1:3] = 1  # 2 of them found
    second_gt = np.zeros((6, 6), np.int64)
    second_gt[4, 4] = 1
    assert foreground_iou(first_pred, first_gt) == pytest.approx(0.5)
    assert foreground_iou(second_gt, second_gt) == 1.0
    assert foreground_iou(np.zeros((3, 3)), np.zeros((3, 3))) == 0.0  # ACM: inter / (union + eps)
    total = mask_stats(first_pred, first_gt, num_classes=2) + mask_stats(second_gt, second_gt, num_classes=2)
    assert total.niou == pytest.approx(0.75)  # mean of per-image IoU
    assert total.class_iou[1] == pytest.approx(3 / 5)  # accumulated target IoU: (2 + 1) / (4 + 1)
    assert total.images == 2


def _square(mask: np.ndarray, row: int, col: int, size: int) -> None:
    mask[row : row + size, col : col + size] = 1


def _blob_scene() -> tuple[np.ndarray, np.ndarray]:
    target = np.zeros((64, 64), np.int64)
    pred = np.zeros((64, 64), np.int64)
    _square(target, 10, 10, 3)  # centroid (11, 11)
    _square(pred, 11, 11, 3)  # centroid (12, 12): 1.41 px away -> detected
    _square(target, 40, 40, 2)  # centroid (40.5, 40.5)
    _square(pred, 43, 40, 2)  # centroid (43.5, 40.5): exactly 3 px -> missed (strict <), 4 false-alarm px
    target[55, 10] = 1  # never predicted
    _square(pred, 30, 50, 3)  # a false blob of 9 px, the same area as the matched one
    return pred, target


def test_pd_fa_on_synthetic_blobs() -> None:
    pred, target = _blob_scene()
    counts = detect_targets(pred, target)
    assert (counts.targets, counts.detected, counts.false_alarm_pixels, counts.pixels) == (3, 1, 13, 64 * 64)
    assert counts.pd == pytest.approx(1 / 3)
    assert counts.fa == pytest.approx(13 / 4096)


def test_pd_fa_distance_is_configurable() -> None:
    pred, target = _blob_scene()
    counts = detect_targets(pred, target, distance=3.5)
    assert (counts.detected, counts.false_alarm_pixels) == (2, 9)


def test_components_are_eight_connected() -> None:
    target = np.zeros((8, 8), np.int64)
    target[2, 2] = target[3, 3] = 1  # diagonal neighbours: one target
    assert detect_targets(target, target).targets == 1


def test_matching_is_dnanet_greedy_in_label_order() -> None:
    target = np.zeros((20, 20), np.int64)
    pred = np.zeros((20, 20), np.int64)
    target[10, 10] = 1  # first target: 2 px from both predictions, takes the first one
    target[11, 6] = 1  # second target: only the first prediction was close enough
    pred[10, 8] = 1
    pred[10, 12] = 1
    counts = detect_targets(pred, target)
    assert (counts.targets, counts.detected, counts.false_alarm_pixels) == (2, 1, 1)


def _dnanet_reference(pred: np.ndarray, target: np.ndarray, distance: float) -> tuple[int, int, int]:
    """DNANet's PD_FA loop written from its description with scipy (FA as the definition says)."""
    eight = np.ones((3, 3))
    pred_labels, pred_count = ndimage.label(pred, structure=eight)
    target_labels, target_count = ndimage.label(target, structure=eight)
    pred_items = [
        (ndimage.center_of_mass(pred_labels == k), int((pred_labels == k).sum())) for k in range(1, pred_count + 1)
    ]
    detected = 0
    for k in range(1, target_count + 1):
        centre = np.array(ndimage.center_of_mass(target_labels == k))
        for index, (pred_centre, _) in enumerate(pred_items):
            if np.linalg.norm(np.array(pred_centre) - centre) < distance:
                detected += 1
                del pred_items[index]
                break
    return target_count, detected, sum(area for _, area in pred_items)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pd_fa_matches_independent_reference_on_random_blobs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = np.zeros((48, 48), np.int64)
    pred = np.zeros((48, 48), np.int64)
    for _ in range(6):
        row, col, size = rng.integers(0, 44), rng.integers(0, 44), rng.integers(1, 4)
        _square(target, row, col, size)
        _square(pred, row + rng.integers(-3, 4), col + rng.integers(-3, 4), rng.integers(1, 4))
    counts = detect_targets(pred, target)
    assert (counts.targets, counts.detected, counts.false_alarm_pixels) == _dnanet_reference(pred, target, 3.0)


def test_ignored_pixels_are_out_of_every_metric() -> None:
    target = np.array([[0, 1, 255], [0, 0, 255]])
    pred = np.array([[0, 1, 1], [0, 0, 1]])
    stats = mask_stats(pred, target, num_classes=2)
    assert stats.confusion.sum() == 4
    assert stats.niou == 1.0
    assert stats.detection.false_alarm_pixels == 0
    assert stats.detection.pixels == 4


def test_mask_stats_sum_is_neutral_with_empty() -> None:
    pred, target = _blob_scene()
    one = mask_stats(pred, target, num_classes=2)
    total = MaskStats.empty(2) + one
    np.testing.assert_array_equal(total.confusion, one.confusion)
    assert total.detection == one.detection
    assert total.miou == pytest.approx(one.miou)
