"""Folder-level evaluation: pairing, aggregation protocols, parallel equality, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from restorecli.errors import ConfigError, MetricError
from restorecli.images import write_array
from restorecli.metrics import EvalSettings, evaluate_pairs, evaluate_paths, match_pairs, parse_metrics, psnr
from restorecli.metrics.evaluate import default_metrics


def _write_pairs(root: Path, count: int = 3, size: int = 24, dtype: type = np.uint8) -> tuple[Path, Path, list]:
    rng = np.random.default_rng(3)
    top = np.iinfo(dtype).max
    pred_dir, gt_dir = root / "pred", root / "gt"
    arrays = []
    for index in range(count):
        clean = rng.integers(0, top + 1, (size, size + 4, 3)).astype(dtype)
        noisy = np.clip(clean + rng.normal(0, top / 20, clean.shape), 0, top).round().astype(dtype)
        write_array(gt_dir / f"img{index}.png", clean)
        write_array(pred_dir / f"img{index}.png", noisy)
        arrays.append((noisy, clean))
    return pred_dir, gt_dir, arrays


def test_pairs_match_by_stem_across_extensions(tmp_path: Path) -> None:
    image = np.zeros((12, 12, 3), np.uint8)
    for name in ("a.png", "b.png", "c.png"):
        write_array(tmp_path / "pred" / name, image)
    for name in ("a.bmp", "b.png", "d.png"):
        write_array(tmp_path / "gt" / name, image)
    pairing = match_pairs(tmp_path / "pred", tmp_path / "gt")
    assert [(p.name, p.gt.name) for p in pairing.pairs] == [("a", "a.bmp"), ("b", "b.png")]
    assert [p.name for p in pairing.missing_gt] == ["c.png"]
    assert [p.name for p in pairing.missing_pred] == ["d.png"]
    with pytest.raises(MetricError, match=r"1 predictions without ground truth: c\.png"):
        pairing.require_complete()


def test_gt_pattern_maps_prediction_stems(tmp_path: Path) -> None:
    mask = np.zeros((12, 12), np.uint8)
    write_array(tmp_path / "pred" / "Misc_1.png", mask)
    write_array(tmp_path / "masks" / "Misc_1_pixels0.png", mask)
    pairing = match_pairs(tmp_path / "pred", tmp_path / "masks", gt_pattern="{stem}_pixels0")
    assert [p.gt.name for p in pairing.pairs] == ["Misc_1_pixels0.png"]
    assert not pairing.missing_gt and not pairing.missing_pred
    with pytest.raises(ConfigError, match="stem"):
        match_pairs(tmp_path / "pred", tmp_path / "masks", gt_pattern="{name}_pixels0")


def test_single_files_pair_whatever_their_names(tmp_path: Path) -> None:
    image = np.zeros((12, 12), np.uint8)
    write_array(tmp_path / "x.png", image)
    write_array(tmp_path / "y.png", image)
    assert [(p.pred.name, p.gt.name) for p in match_pairs(tmp_path / "x.png", tmp_path / "y.png").pairs] == [
        ("x.png", "y.png")
    ]


def test_duplicate_stems_are_ambiguous(tmp_path: Path) -> None:
    image = np.zeros((12, 12), np.uint8)
    write_array(tmp_path / "pred" / "a.png", image)
    write_array(tmp_path / "pred" / "a.bmp", image)
    write_array(tmp_path / "gt" / "a.png", image)
    with pytest.raises(MetricError, match="one image per name"):
        match_pairs(tmp_path / "pred", tmp_path / "gt")


def test_means_equal_the_mean_of_per_image_reference_values(tmp_path: Path) -> None:
    pred_dir, gt_dir, arrays = _write_pairs(tmp_path)
    report = evaluate_paths(pred_dir, gt_dir, EvalSettings(), keep_scores=True)
    expected_psnr = np.mean([psnr(p, g, data_range=255) for p, g in arrays])
    expected_ssim = np.mean(
        [
            structural_similarity(
                p, g, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
            )
            for p, g in arrays
        ]
    )
    assert report.count == 3
    assert report.summary["psnr"] == pytest.approx(expected_psnr, abs=1e-10)
    assert report.summary["ssim"] == pytest.approx(expected_ssim, abs=1e-10)
    assert [s.pair.name for s in report.scores] == ["img0", "img1", "img2"]
    assert report.convention["data_range"] == [255.0]


def test_two_workers_give_identical_results_in_order(tmp_path: Path) -> None:
    pred_dir, gt_dir, _ = _write_pairs(tmp_path, count=4)
    settings = EvalSettings(y_channel=True, crop_border=2)
    one = evaluate_paths(pred_dir, gt_dir, settings, workers=1, keep_scores=True)
    two = evaluate_paths(pred_dir, gt_dir, settings, workers=2, keep_scores=True)
    assert one.summary == two.summary
    assert [s.values for s in one.scores] == [s.values for s in two.scores]


def test_sixteen_bit_files_use_the_16_bit_range(tmp_path: Path) -> None:
    pred_dir, gt_dir, arrays = _write_pairs(tmp_path, count=2, dtype=np.uint16)
    report = evaluate_paths(pred_dir, gt_dir, EvalSettings())
    assert report.convention["data_range"] == [65535.0]
    assert report.summary["psnr"] == pytest.approx(np.mean([psnr(p, g, data_range=65535) for p, g in arrays]))


def test_identical_pairs_are_counted_apart_from_the_psnr_mean(tmp_path: Path) -> None:
    pred_dir, gt_dir, arrays = _write_pairs(tmp_path, count=2)
    write_array(pred_dir / "img0.png", arrays[0][1])  # now identical to its GT
    report = evaluate_paths(pred_dir, gt_dir, EvalSettings())
    assert report.summary["psnr_inf"] == 1
    assert report.summary["psnr"] == pytest.approx(psnr(*arrays[1], data_range=255))
    for path in (pred_dir / "img1.png",):
        write_array(path, arrays[1][1])
    assert evaluate_paths(pred_dir, gt_dir, EvalSettings()).summary["psnr"] == math.inf


def test_mis_sized_pair_names_both_files(tmp_path: Path) -> None:
    write_array(tmp_path / "pred" / "a.png", np.zeros((16, 16, 3), np.uint8))
    write_array(tmp_path / "gt" / "a.png", np.zeros((16, 18, 3), np.uint8))
    with pytest.raises(MetricError, match=r"same size.*a\.png vs .*a\.png"):
        evaluate_paths(tmp_path / "pred", tmp_path / "gt", EvalSettings())


def test_mask_sets_default_to_mask_metrics_and_accumulate(tmp_path: Path) -> None:
    target = np.zeros((20, 20), np.uint8)
    target[5:8, 5:8] = 255
    pred = np.zeros_like(target)
    pred[6:9, 6:9] = 255
    write_array(tmp_path / "pred" / "a.png", pred)
    write_array(tmp_path / "gt" / "a_pixels0.png", target)
    write_array(tmp_path / "pred" / "b.png", np.zeros_like(target))
    write_array(tmp_path / "gt" / "b_pixels0.png", target)
    report = evaluate_paths(tmp_path / "pred", tmp_path / "gt", EvalSettings(metrics=None), gt_pattern="{stem}_pixels0")
    assert report.settings.metrics == ("miou", "niou", "pd", "fa")
    assert report.summary["pd"] == 0.5
    assert report.summary["fa"] == 0.0
    assert report.summary["niou"] == pytest.approx((4 / 14 + 0) / 2)
    assert report.class_iou[1] == pytest.approx(4 / (9 + 9 + 9 - 4))  # accumulated: union over both images
    assert (report.summary["targets"], report.summary["detected"], report.summary["pixels"]) == (2, 1, 800)


def test_default_metrics_are_psnr_ssim_for_photos(tmp_path: Path) -> None:
    pred_dir, gt_dir, _ = _write_pairs(tmp_path, count=1)
    assert default_metrics(match_pairs(pred_dir, gt_dir).pairs) == ("psnr", "ssim")


def test_transform_restores_before_scoring(tmp_path: Path) -> None:
    pred_dir, gt_dir, arrays = _write_pairs(tmp_path, count=2)
    clean = {f"img{i}": g for i, (_, g) in enumerate(arrays)}
    report = evaluate_paths(pred_dir, gt_dir, EvalSettings(), workers=2, transform=lambda path, _: clean[path.stem])
    assert report.summary["psnr_inf"] == 2
    assert report.summary["ssim"] == pytest.approx(1.0)


def test_scores_stream_to_the_callback_in_order(tmp_path: Path) -> None:
    pred_dir, gt_dir, _ = _write_pairs(tmp_path, count=3)
    seen: list[str] = []
    pairs = match_pairs(pred_dir, gt_dir).pairs
    report = evaluate_pairs(pairs, EvalSettings(), on_score=lambda s: seen.append(s.pair.name))
    assert seen == ["img0", "img1", "img2"]
    assert report.scores == ()  # not kept unless asked


@pytest.mark.parametrize(
    "settings",
    [
        {"crop_border": -1},
        {"round_y": True},
        {"threshold": 1.0},
        {"num_classes": 1},
        {"distance": 0.0},
        {"data_range": 0.0},
        {"metrics": ("psnr", "lpips")},
    ],
)
def test_invalid_settings_fail_early(settings: dict) -> None:
    with pytest.raises(ConfigError):
        EvalSettings(**settings)


def test_parse_metrics() -> None:
    assert parse_metrics("PSNR, ssim,psnr") == ("psnr", "ssim")
    with pytest.raises(ConfigError, match="lpips"):
        parse_metrics("psnr,lpips")


def test_no_pairs_is_an_error() -> None:
    with pytest.raises(MetricError, match="at least one"):
        evaluate_pairs([], EvalSettings())


def test_rounding_y_needs_an_integer_range_before_any_file_is_read() -> None:
    with pytest.raises(ConfigError, match="integer data range"):
        EvalSettings(y_channel=True, round_y=True, data_range=1.0)
    EvalSettings(y_channel=True, round_y=True, data_range=255)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_sr_protocols_advice_is_a_command_line_that_runs(scale: int) -> None:
    from restorecli.metrics.protocols import PROTOCOLS

    assert f"--y-channel --round-y --crop-border {scale} instead of --protocol" in PROTOCOLS[f"sr-x{scale}"].source
    EvalSettings(y_channel=True, round_y=True, crop_border=scale)  # what that advice builds
