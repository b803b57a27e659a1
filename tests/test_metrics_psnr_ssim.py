"""PSNR/SSIM against closed forms, a transcription of the BasicSR/MATLAB formulas, and scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import correlate2d
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from restorecli.errors import MetricError
from restorecli.metrics import psnr, rgb_to_y, ssim, ssim3d
from restorecli.metrics.psnr_ssim import skimage_ssim_of_prepared

C1_8BIT = (0.01 * 255) ** 2
C2_8BIT = (0.03 * 255) ** 2


def _reference_window() -> np.ndarray:
    """MATLAB fspecial('gaussian', 11, 1.5), written from its definition."""
    offsets = np.arange(11) - 5.0
    grid = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * 1.5**2))
    return grid / grid.sum()


def _reference_ssim(first: np.ndarray, second: np.ndarray, data_range: float) -> float:
    """Wang et al.'s ssim_index: 'valid' filtering, map mean; channel mean as BasicSR."""
    window = _reference_window()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    first = np.atleast_3d(first.astype(np.float64))
    second = np.atleast_3d(second.astype(np.float64))
    scores = []
    for channel in range(first.shape[2]):
        x, y = first[:, :, channel], second[:, :, channel]

        def f(a: np.ndarray) -> np.ndarray:
            return correlate2d(a, window, mode="valid")

        mu_x, mu_y = f(x), f(y)
        var_x, var_y, cov = f(x * x) - mu_x**2, f(y * y) - mu_y**2, f(x * y) - mu_x * mu_y
        ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
        scores.append(ssim_map.mean())
    return float(np.mean(scores))


def _basicsr_y(image: np.ndarray) -> np.ndarray:
    """BasicSR to_y_channel on the BGR image it would have read with cv2 (float32, not rounded)."""
    bgr = image[:, :, ::-1].astype(np.float32) / 255.0
    return (np.dot(bgr, [24.966, 128.553, 65.481]) + 16.0) / 255.0 * 255.0


def _noisy_pair(shape: tuple[int, ...], dtype: type = np.uint8, sigma: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    top = np.iinfo(dtype).max
    clean = rng.integers(0, top + 1, size=shape, dtype=np.int64)
    noisy = np.clip(clean + rng.normal(0, sigma * top / 255, size=shape), 0, top).round()
    return noisy.astype(dtype), clean.astype(dtype)


def test_psnr_of_constant_images_is_closed_form() -> None:
    pred = np.full((16, 16, 3), 100, np.uint8)
    target = np.full((16, 16, 3), 110, np.uint8)
    assert psnr(pred, target, data_range=255) == pytest.approx(20 * math.log10(255 / 10), abs=1e-10)


def test_psnr_of_one_pixel_difference() -> None:
    target = np.zeros((10, 20), np.uint8)
    pred = target.copy()
    pred[3, 7] = 40  # MSE = 40^2 / 200
    assert psnr(pred, target, data_range=255) == pytest.approx(10 * math.log10(255**2 * 200 / 1600), abs=1e-10)


def test_psnr_of_stripes_shifted_by_one_pixel_is_zero() -> None:
    stripes = np.tile(np.array([0, 255], np.uint8), (12, 8))
    assert psnr(np.roll(stripes, 1, axis=1), stripes, data_range=255) == pytest.approx(0.0, abs=1e-12)


def test_identical_images_give_infinite_psnr_and_unit_ssim() -> None:
    image = _noisy_pair((24, 24, 3))[1]
    assert psnr(image, image, data_range=255) == math.inf
    assert ssim(image, image, data_range=255) == pytest.approx(1.0, abs=1e-12)


def test_ssim_of_constant_images_is_closed_form() -> None:
    a, b = 60.0, 90.0  # no variance: SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    expected = (2 * a * b + C1_8BIT) / (a**2 + b**2 + C1_8BIT)
    got = ssim(np.full((20, 20), a, np.uint8), np.full((20, 20), b, np.uint8), data_range=255)
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("shape", [(40, 33, 3), (29, 31), (40, 33, 1)])
def test_matches_reference_formulas_and_scikit_image(shape: tuple[int, ...]) -> None:
    pred, target = _noisy_pair(shape)
    expected_psnr = 10 * np.log10(255**2 / np.mean((pred.astype(np.float64) - target) ** 2))
    assert psnr(pred, target, data_range=255) == pytest.approx(expected_psnr, abs=1e-10)
    assert psnr(pred, target, data_range=255) == pytest.approx(
        peak_signal_noise_ratio(target, pred, data_range=255), abs=1e-10
    )
    assert ssim(pred, target, data_range=255) == pytest.approx(_reference_ssim(pred, target, 255), abs=1e-10)
    channel_axis = -1 if len(shape) == 3 else None
    skimage_value = structural_similarity(
        pred,
        target,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
        channel_axis=channel_axis,
    )
    assert ssim(pred, target, data_range=255) == pytest.approx(skimage_value, abs=1e-10)


def test_scikit_image_defaults_are_a_different_ssim() -> None:
    pred, target = _noisy_pair((40, 40), sigma=60.0)
    assert abs(ssim(pred, target, data_range=255) - structural_similarity(pred, target, data_range=255)) > 1e-3


def test_y_channel_matches_basicsr_to_y_channel() -> None:
    pred, target = _noisy_pair((36, 30, 3))
    y_pred, y_target = _basicsr_y(pred).astype(np.float64), _basicsr_y(target).astype(np.float64)
    expected_psnr = 10 * np.log10(255**2 / np.mean((y_pred - y_target) ** 2))
    assert psnr(pred, target, data_range=255, y_channel=True) == pytest.approx(expected_psnr, abs=1e-4)
    assert ssim(pred, target, data_range=255, y_channel=True) == pytest.approx(
        _reference_ssim(y_pred, y_target, 255), abs=1e-5
    )


def test_rgb_to_y_hand_values() -> None:
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    expected = [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966]
    np.testing.assert_allclose(rgb_to_y(pixels, data_range=255)[0], expected, atol=1e-9)
    np.testing.assert_allclose(rgb_to_y(pixels, data_range=255, round_y=True)[0], [16, 235, 81, 145, 41])
    sixteen = pixels.astype(np.uint16) * 257
    np.testing.assert_allclose(rgb_to_y(sixteen, data_range=65535)[0], np.array(expected) * 257, atol=1e-6)


def test_rounded_y_matches_matlab_style_integer_luma() -> None:
    pred, target = _noisy_pair((30, 30, 3))
    y_pred, y_target = (np.floor(_basicsr_y(a).astype(np.float64) + 0.5) for a in (pred, target))
    expected = 10 * np.log10(255**2 / np.mean((y_pred - y_target) ** 2))
    assert psnr(pred, target, data_range=255, y_channel=True, round_y=True) == pytest.approx(expected, abs=1e-4)


def test_y_channel_of_grey_is_the_grey_itself() -> None:
    pred, target = _noisy_pair((25, 25))
    assert psnr(pred, target, data_range=255, y_channel=True) == psnr(pred, target, data_range=255)
    np.testing.assert_array_equal(rgb_to_y(target, data_range=255), target.astype(np.float64))


def test_crop_border_drops_edge_differences() -> None:
    pred, target = _noisy_pair((30, 30, 3))
    pred[4:-4, 4:-4] = target[4:-4, 4:-4]
    assert psnr(pred, target, data_range=255, crop_border=4) == math.inf
    assert psnr(pred, target, data_range=255, crop_border=3) < math.inf
    assert ssim(pred, target, data_range=255, crop_border=4) == pytest.approx(1.0, abs=1e-12)
    cropped = (slice(3, -3), slice(3, -3))
    assert ssim(pred, target, data_range=255, crop_border=3) == pytest.approx(
        _reference_ssim(pred[cropped], target[cropped], 255), abs=1e-10
    )


def test_sixteen_bit_scaled_copy_scores_like_eight_bit() -> None:
    pred, target = _noisy_pair((32, 32, 3))
    wide_pred, wide_target = pred.astype(np.uint16) * 257, target.astype(np.uint16) * 257
    for function in (psnr, ssim):
        for y_channel in (False, True):
            narrow = function(pred, target, data_range=255, y_channel=y_channel)
            wide = function(wide_pred, wide_target, data_range=65535, y_channel=y_channel)
            assert wide == pytest.approx(narrow, abs=1e-9)


def test_sixteen_bit_matches_reference_at_full_depth() -> None:
    pred, target = _noisy_pair((30, 28), dtype=np.uint16)
    assert ssim(pred, target, data_range=65535) == pytest.approx(_reference_ssim(pred, target, 65535), abs=1e-10)
    expected = 10 * np.log10(65535.0**2 / np.mean((pred.astype(np.float64) - target) ** 2))
    assert psnr(pred, target, data_range=65535) == pytest.approx(expected, abs=1e-10)


def test_float_inputs_are_left_untouched() -> None:
    pred, target = (a.astype(np.float64) / 255 for a in _noisy_pair((20, 20, 3)))
    before = pred.copy()
    value = psnr(pred, target, data_range=1.0)
    np.testing.assert_array_equal(pred, before)
    assert value == pytest.approx(psnr((pred * 255).round(), (target * 255).round(), data_range=255), abs=1e-9)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: psnr(np.zeros((12, 12)), np.zeros((12, 13)), data_range=255), "same shape"),
        (lambda: ssim(np.zeros((10, 30)), np.zeros((10, 30)), data_range=255), "at least 11x11"),
        (lambda: ssim(np.zeros((20, 20)), np.zeros((20, 20)), data_range=255, crop_border=5), "at least 11x11"),
        (lambda: skimage_ssim_of_prepared(np.zeros((6, 30)), np.zeros((6, 30)), data_range=255), "at least 7x7"),
        (lambda: psnr(np.zeros((12, 12)), np.zeros((12, 12)), data_range=255, crop_border=6), "crop border"),
        (lambda: psnr(np.zeros((12, 12)), np.zeros((12, 12)), data_range=0), "positive data range"),
        (lambda: rgb_to_y(np.zeros((4, 4, 3)), data_range=1.0, round_y=True), "integer data range"),
        (lambda: rgb_to_y(np.zeros((4, 4, 4)), data_range=255), "RGB"),
    ],
)
def test_invalid_inputs_raise_metric_error(call: object, message: str) -> None:
    with pytest.raises(MetricError, match=message):
        call()  # type: ignore[operator]


def _nafnet_ssim_3d(first: np.ndarray, second: np.ndarray, max_value: float) -> float:
    """NAFNet basicsr ``_ssim_3d``, transcribed: Conv3d over (H, W, C), 11x11x11 Gaussian, replicate padding.

    Written as NAFNet does (``np.stack([window * k for k in kernel_3])``, ``padding_mode='replicate'``),
    in float64 on the CPU where NAFNet runs float32 on CUDA.
    """
    import cv2
    import torch

    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())
    kernel_3 = cv2.getGaussianKernel(11, 1.5)
    weight = torch.tensor(np.stack([window * k for k in kernel_3], axis=0))[None, None]

    def conv3d(volume: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(volume[None, None], (5, 5, 5, 5, 5, 5), mode="replicate")
        return torch.nn.functional.conv3d(padded, weight)[0, 0]

    c1, c2 = (0.01 * max_value) ** 2, (0.03 * max_value) ** 2
    img1 = torch.tensor(first.astype(np.float64))
    img2 = torch.tensor(second.astype(np.float64))
    mu1, mu2 = conv3d(img1), conv3d(img2)
    mu1_sq, mu2_sq, mu1_mu2 = mu1**2, mu2**2, mu1 * mu2
    sigma1_sq = conv3d(img1**2) - mu1_sq
    sigma2_sq = conv3d(img2**2) - mu2_sq
    sigma12 = conv3d(img1 * img2) - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


def _nafnet_ssim_cly(first: np.ndarray, second: np.ndarray) -> float:
    """NAFNet basicsr ``_ssim_cly`` (its Y-channel SSIM), transcribed: 2-D Gaussian, replicate border, full map."""
    import cv2

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    kernel = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(kernel, kernel.transpose())

    def f(image: np.ndarray) -> np.ndarray:
        return cv2.filter2D(image, -1, window, borderType=cv2.BORDER_REPLICATE)

    img1, img2 = first.astype(np.float64), second.astype(np.float64)
    mu1, mu2 = f(img1), f(img2)
    sigma1_sq, sigma2_sq, sigma12 = f(img1**2) - mu1**2, f(img2**2) - mu2**2, f(img1 * img2) - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * sigma12 + c2)) / ((mu1**2 + mu2**2 + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


@pytest.mark.parametrize(("shape", "sigma"), [((37, 52, 3), 8.0), ((24, 19, 3), 30.0), ((64, 48, 4), 15.0)])
def test_ssim3d_equals_nafnets_formula(shape: tuple[int, ...], sigma: float) -> None:
    pred, target = _noisy_pair(shape, sigma=sigma)
    smooth = _blurred(pred)  # a restored-looking prediction: where 2-D and 3-D SSIM part ways
    for candidate in (pred, smooth):
        expected = _nafnet_ssim_3d(candidate, target, 255.0)
        assert ssim3d(candidate, target, data_range=255) == pytest.approx(expected, abs=1e-4)
    assert abs(ssim3d(smooth, target, data_range=255) - ssim(smooth, target, data_range=255)) > 1e-3


def test_ssim3d_on_float_images_uses_the_given_range() -> None:
    pred, target = _noisy_pair((30, 33, 3))
    scaled = ssim3d(pred / 255.0, target / 255.0, data_range=1.0)
    assert scaled == pytest.approx(_nafnet_ssim_3d(pred / 255.0, target / 255.0, 1.0), abs=1e-4)
    assert scaled == pytest.approx(ssim3d(pred, target, data_range=255), abs=1e-10)


def test_ssim3d_of_the_y_channel_is_nafnets_y_channel_ssim() -> None:
    pred, target = _noisy_pair((40, 41, 3))
    expected = _nafnet_ssim_cly(rgb_to_y(pred, data_range=255), rgb_to_y(target, data_range=255))
    assert ssim3d(pred, target, data_range=255, y_channel=True) == pytest.approx(expected, abs=1e-10)
    assert ssim3d(target, target, data_range=255) == pytest.approx(1.0)


def _blurred(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (5, 5), 1.2)
