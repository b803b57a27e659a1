"""PSNR and SSIM with the conventions of BasicSR's ``calculate_psnr`` / ``calculate_ssim``.

Papers in image restoration report numbers from BasicSR (``basicsr/metrics/psnr_ssim.py``) or from the
original MATLAB SSIM code of Wang et al., so these functions reproduce them exactly:

- arithmetic in float64 on the pixel values as stored (``[0, 255]`` for 8-bit, ``[0, 65535]`` for
  16-bit, any ``data_range`` for float arrays);
- ``crop_border`` pixels removed from every edge of both images first;
- optional luma of ITU-R BT.601 as BasicSR's ``to_y_channel`` (MATLAB ``rgb2ycbcr``) computes it, on RGB
  input (BasicSR reads BGR with OpenCV and swaps the weights accordingly; the numbers are the same);
- SSIM with an 11x11 Gaussian window (sigma = 1.5, the MATLAB ``fspecial('gaussian', 11, 1.5)``),
  K1 = 0.01, K2 = 0.03, evaluated on the 'valid' region only (5 pixels dropped at each edge), the
  map averaged, then the mean taken over channels.

scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=R, channel_axis=-1)`` computes the same number for integer or
float64 inputs: it filters with reflect padding and then crops ``(win_size - 1) // 2 = 5`` pixels, which
is exactly the valid region. It is not used here because it is ~3x slower (scipy.ndimage filters)
and computes float32 inputs in float32; it serves as the reference in the tests. It has no
``crop_border`` or Y-channel option, and its defaults (7x7 uniform window, sample covariance) give a
different SSIM.

:func:`ssim3d` is the SSIM NAFNet (and HINet) publish: its ``calculate_ssim(..., ssim3d=True)`` filters the
``(H, W, C)`` array as one volume, and so does MATLAB's ``ssim`` on an RGB array (Restormer's GoPro/HIDE
script), see :func:`ssim3d`.
"""

from __future__ import annotations

import cv2
import numpy as np

from restorecli.errors import MetricError

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
# scikit-image's structural_similarity: a 7x7 uniform window (its default win_size).
SKIMAGE_SSIM_WINDOW = 7
SSIM_K1 = 0.01
SSIM_K2 = 0.03
_VALID_MARGIN = SSIM_WINDOW // 2
# BT.601 weights for R, G, B on [0, 1] giving Y on the 8-bit scale [16, 235] (MATLAB rgb2ycbcr).
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
_Y_OFFSET = 16.0
_EIGHT_BIT = 255.0
# Values per SSIM strip (4 MB of float64 per intermediate map, 174 rows of a 1000-pixel-wide RGB image):
# the intermediate maps of a strip stay in the CPU caches instead of streaming whole-image maps through
# memory, which makes SSIM ~1.3x faster on 1-megapixel images.
_STRIP_VALUES = 1 << 19


def rgb_to_y(image: np.ndarray, *, data_range: float, round_y: bool = False) -> np.ndarray:
    """Luma ``Y = 16 + 65.481 R + 128.553 G + 24.966 B`` (R, G, B in ``[0, 1]``), in the data range.

    Reproduces BasicSR's ``to_y_channel`` (``bgr2ycbcr(y_only=True)``): for 8-bit images Y lies in
    ``[16, 235]``; for other ranges it is scaled by ``data_range / 255``. A grey ``(H, W)`` or
    ``(H, W, 1)`` image is returned unchanged, as BasicSR does.

    Args:
        image: ``(H, W, 3)`` RGB, or grey ``(H, W)`` / ``(H, W, 1)``; any dtype.
        data_range: value of full white (255 for 8-bit, 65535 for 16-bit, 1.0 for float in [0, 1]).
        round_y: round Y to whole numbers (half up), as MATLAB's ``rgb2ycbcr`` does on uint8/uint16
            input (the Restormer deraining script); BasicSR does not round. Integer ranges only.

    Returns:
        ``(H, W)`` float64 luma.
    """
    _check_data_range(data_range)
    if round_y and (data_range < _EIGHT_BIT or not float(data_range).is_integer()):
        raise MetricError(f"Expected an integer data range (255 or 65535) to round Y, but got {data_range}")
    array = np.asarray(image)
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 1):
        return array.reshape(array.shape[:2]).astype(np.float64)
    if array.ndim != 3 or array.shape[2] != 3:
        raise MetricError(f"Expected an (H, W, 3) RGB or a grey image for the Y channel, but got shape {array.shape}")
    luma = array.astype(np.float64) @ (_Y_WEIGHTS / data_range)
    luma += _Y_OFFSET
    luma *= data_range / _EIGHT_BIT
    if round_y:
        luma = np.floor(luma + 0.5)
    return luma


def psnr(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    data_range: float,
    crop_border: int = 0,
    y_channel: bool = False,
    round_y: bool = False,
) -> float:
    """Peak signal-to-noise ratio in dB, as BasicSR ``calculate_psnr`` (float64 MSE over all channels).

    Args:
        pred, target: ``(H, W)`` or ``(H, W, C)`` arrays of the same shape (uint8, uint16 or float).
        data_range: value of full white: ``10 * log10(data_range**2 / MSE)``.
        crop_border: pixels dropped at each edge before comparing (super-resolution convention).
        y_channel: compare the BT.601 luma only (see :func:`rgb_to_y`).
        round_y: round the luma to integers as MATLAB does (see :func:`rgb_to_y`).

    Returns:
        PSNR in dB; ``inf`` for identical images.
    """
    first, second = prepare_pair(
        pred, target, data_range=data_range, crop_border=crop_border, y_channel=y_channel, round_y=round_y
    )
    return _psnr(first, second, data_range)


def ssim(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    data_range: float,
    crop_border: int = 0,
    y_channel: bool = False,
    round_y: bool = False,
) -> float:
    """Structural similarity as BasicSR ``calculate_ssim`` and Wang et al.'s MATLAB ``ssim_index``.

    Gaussian 11x11 window (sigma 1.5), K1 = 0.01, K2 = 0.03, population statistics, mean of the SSIM
    map over the valid region (borders whose window leaves the image are excluded), then the mean over
    channels. The separable filter runs in OpenCV (float64) on strips of rows small enough to stay in the
    CPU caches, which is what makes it fast.

    Args:
        pred, target: ``(H, W)`` or ``(H, W, C)`` arrays of the same shape, each side at least 11
            pixels after cropping.
        data_range: value of full white; sets C1 = (K1 * data_range)^2 and C2 = (K2 * data_range)^2.
        crop_border: pixels dropped at each edge before comparing.
        y_channel: compare the BT.601 luma only (see :func:`rgb_to_y`).
        round_y: round the luma to integers as MATLAB does (see :func:`rgb_to_y`).

    Returns:
        Mean SSIM, 1.0 for identical images.
    """
    first, second = prepare_pair(
        pred, target, data_range=data_range, crop_border=crop_border, y_channel=y_channel, round_y=round_y
    )
    return _ssim(first, second, data_range)


def ssim3d(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    data_range: float,
    crop_border: int = 0,
    y_channel: bool = False,
    round_y: bool = False,
) -> float:
    """SSIM over a volume: NAFNet's ``calculate_ssim(..., ssim3d=True)`` and MATLAB's ``ssim`` on RGB arrays.

    NAFNet's ``_ssim_3d`` runs one ``Conv3d`` over the ``(H, W, C)`` array seen as a volume: the kernel is
    the 11x11x11 Gaussian (sigma 1.5 on every axis, the outer product of three ``getGaussianKernel(11, 1.5)``),
    padding 5 with ``replicate`` on all three axes, so the channel axis is padded ``RRRRRGBBBBB``; the
    SSIM map keeps the full size and its mean over height, width *and* channel is the score (no valid
    crop, no per-channel mean). MATLAB's ``ssim(A, ref)`` without ``DataFormat`` does the same on an
    ``H x W x 3`` array (a 3-D Gaussian of radius 1.5, size ``2 * ceil(3 * 1.5) + 1 = 11``, replicate
    padding), which is why both give the same number.

    Differences from the references, all below 1e-5 on 8-bit images: NAFNet computes in float32 on the
    GPU and MATLAB in single precision for integer input; this is float64. NAFNet guesses the range
    (``1 if pred.max() <= 1 else 255``) where ``data_range`` is given here (MATLAB: from the class, 255
    for uint8). The 3-D Gaussian is separable, so it runs as a 2-D filter per channel followed by the
    11-tap filter along channels, folded into a ``C x C`` matrix (replicate padding sends every tap that
    falls outside the channels to the first or last one).

    Args:
        pred, target: ``(H, W)`` or ``(H, W, C)`` arrays of the same shape; a grey image (or the Y
            channel) gives NAFNet's ``_ssim_cly``: a 2-D Gaussian with replicate padding, full map.
        data_range: value of full white.
        crop_border, y_channel, round_y: as in :func:`ssim`.

    Returns:
        Mean SSIM over the volume, 1.0 for identical images.
    """
    first, second = prepare_pair(
        pred, target, data_range=data_range, crop_border=crop_border, y_channel=y_channel, round_y=round_y
    )
    return ssim3d_of_prepared(first, second, data_range)


def prepare_pair(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    data_range: float,
    crop_border: int = 0,
    y_channel: bool = False,
    round_y: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate, crop, optionally convert to Y, and return contiguous float64 copies: ``(H, W[, C])``.

    Folder evaluation prepares each pair once and hands the copies to every ``*_of_prepared`` function,
    which return the same values as :func:`psnr`, :func:`ssim` and :func:`ssim3d`.
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise MetricError(f"Expected images of the same shape, but got {pred.shape} and {target.shape}")
    if pred.ndim not in (2, 3):
        raise MetricError(f"Expected (H, W) or (H, W, C) images, but got shape {pred.shape}")
    _check_data_range(data_range)
    if crop_border < 0:
        raise MetricError(f"Expected a crop border >= 0, but got {crop_border}")
    height, width = pred.shape[:2]
    if 2 * crop_border >= min(height, width):
        raise MetricError(
            f"Expected a crop border below half the image size, but got {crop_border} for {height}x{width}"
        )
    if crop_border:
        pred = pred[crop_border:-crop_border, crop_border:-crop_border]
        target = target[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        return (
            rgb_to_y(pred, data_range=data_range, round_y=round_y),
            rgb_to_y(target, data_range=data_range, round_y=round_y),
        )
    if pred.ndim == 3 and pred.shape[2] == 1:
        pred, target = pred[:, :, 0], target[:, :, 0]
    return np.ascontiguousarray(pred, dtype=np.float64), np.ascontiguousarray(target, dtype=np.float64)


def psnr_of_prepared(first: np.ndarray, second: np.ndarray, data_range: float) -> float:
    """:func:`psnr` of a pair from :func:`prepare_pair`."""
    return _psnr(first, second, data_range)


def ssim_of_prepared(first: np.ndarray, second: np.ndarray, data_range: float) -> float:
    """:func:`ssim` of a pair from :func:`prepare_pair`."""
    return _ssim(first, second, data_range)


def ssim3d_of_prepared(first: np.ndarray, second: np.ndarray, data_range: float) -> float:
    """:func:`ssim3d` of a pair from :func:`prepare_pair`.

    Works plane by plane (contiguous ``(H, W)`` arrays for OpenCV), and filters ``x^2 + y^2`` once instead
    of ``x^2`` and ``y^2`` apart: only their sum enters the formula, and the filter is linear.
    """
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    planes1 = [np.ascontiguousarray(plane) for plane in np.moveaxis(np.atleast_3d(first), 2, 0)]
    planes2 = [np.ascontiguousarray(plane) for plane in np.moveaxis(np.atleast_3d(second), 2, 0)]
    mixing = _replicate_channel_filter(len(planes1))
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA)

    def blur(planes: list[np.ndarray]) -> list[np.ndarray]:
        flat = [cv2.sepFilter2D(plane, cv2.CV_64F, kernel, kernel, borderType=cv2.BORDER_REPLICATE) for plane in planes]
        return [sum(weight * plane for weight, plane in zip(row, flat, strict=True) if weight) for row in mixing]

    mu1s, mu2s = blur(planes1), blur(planes2)
    crosses = blur([a * b for a, b in zip(planes1, planes2, strict=True)])
    energies = blur([a * a + b * b for a, b in zip(planes1, planes2, strict=True)])
    total = 0.0
    for mu1, mu2, cross, energy in zip(mu1s, mu2s, crosses, energies, strict=True):
        mu12 = mu1 * mu2
        squares = mu1 * mu1 + mu2 * mu2
        numerator = (2 * mu12 + c1) * (2 * (cross - mu12) + c2)
        denominator = (squares + c1) * (energy - squares + c2)
        total += float((numerator / denominator).sum())
    return total / first.size


def skimage_ssim_of_prepared(first: np.ndarray, second: np.ndarray, data_range: float) -> float:
    """scikit-image's ``structural_similarity`` with its defaults, as Restormer's DPDD scripts call it.

    7x7 uniform window, sample covariance, the map cropped by 3 pixels and averaged, then the mean over
    channels: a different number from :func:`ssim` (Gaussian window, population statistics).
    """
    from skimage.metrics import structural_similarity  # only this metric needs scikit-image's filters

    height, width = first.shape[:2]
    if min(height, width) < SKIMAGE_SSIM_WINDOW:  # scikit-image raises a ValueError that names no file
        raise MetricError(
            f"Expected images of at least {SKIMAGE_SSIM_WINDOW}x{SKIMAGE_SSIM_WINDOW} pixels for scikit-image's "
            f"SSIM (after cropping), but got {height}x{width}"
        )
    axis = -1 if first.ndim == 3 else None
    return float(structural_similarity(first, second, data_range=data_range, channel_axis=axis))


def _replicate_channel_filter(channels: int) -> np.ndarray:
    """``(C, C)`` matrix of the 11-tap Gaussian along channels with replicate padding: ``out = M @ in``.

    Output channel ``i`` takes tap ``k`` from input channel ``clip(i + k - 5, 0, C - 1)``, as a
    replicate-padded convolution does; summing the taps that land on each channel gives the matrix.
    """
    taps = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA).ravel()
    matrix = np.zeros((channels, channels))
    for out in range(channels):
        for tap, weight in enumerate(taps):
            matrix[out, min(max(out + tap - _VALID_MARGIN, 0), channels - 1)] += weight
    return matrix


def _psnr(first: np.ndarray, second: np.ndarray, data_range: float) -> float:
    difference = (first - second).ravel()
    mse = float(np.einsum("i,i->", difference, difference)) / difference.size  # no BLAS thread pool in workers
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(float(data_range) ** 2 / mse))


def _ssim(first: np.ndarray, second: np.ndarray, data_range: float) -> float:
    """Mean SSIM of prepared float64 images, computed strip by strip.

    A strip of output rows needs ``_VALID_MARGIN`` more input rows on each side (the window's reach), so
    its rows equal those of a whole-image filter; the strip's own border rows are thrown away. The per-channel
    sums over strips differ from one whole-map mean only by float64 rounding (~1e-14).
    """
    height, width = first.shape[:2]
    if min(height, width) < SSIM_WINDOW:
        raise MetricError(
            f"Expected images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels for SSIM (after cropping), "
            f"but got {height}x{width}"
        )
    margin = _VALID_MARGIN
    rows = max(4 * SSIM_WINDOW, _STRIP_VALUES // first[0].size)  # halo rows stay a small share of a strip
    totals = np.zeros(first.shape[2:])  # per channel (a 0-d array for grey)
    for top in range(margin, height - margin, rows):
        bottom = min(top + rows, height - margin)
        strip = slice(top - margin, bottom + margin)
        ssim_map = _ssim_map(first[strip], second[strip], data_range)
        totals += ssim_map[margin:-margin, margin : width - margin].sum(axis=(0, 1))
    return float(np.mean(totals / ((height - 2 * margin) * (width - 2 * margin))))


def _ssim_map(first: np.ndarray, second: np.ndarray, data_range: float) -> np.ndarray:
    """SSIM at every pixel (borders filtered with OpenCV's default reflection; the caller drops them)."""
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    kernel = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA)

    def blur(array: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(array, cv2.CV_64F, kernel, kernel)

    # In-place arithmetic, same formula as BasicSR's
    # ((2 mu1 mu2 + C1)(2 sigma12 + C2)) / ((mu1^2 + mu2^2 + C1)(sigma1^2 + sigma2^2 + C2)).
    mu1 = blur(first)
    mu2 = blur(second)
    cross = blur(first * second)
    energy = first * first
    energy += second * second
    squares = blur(energy)  # blur(x^2) + blur(y^2) in one filter: the filter is linear
    mu12 = mu1 * mu2
    mu1 *= mu1
    mu2 *= mu2
    mu1 += mu2
    mu1 += c1  # mu1^2 + mu2^2 + C1
    squares -= mu1
    squares += c1 + c2  # sigma1^2 + sigma2^2 + C2
    cross -= mu12
    cross *= 2.0
    cross += c2  # 2 sigma12 + C2
    mu12 *= 2.0
    mu12 += c1  # 2 mu1 mu2 + C1
    mu12 *= cross
    mu1 *= squares
    mu12 /= mu1
    return mu12


def _check_data_range(data_range: float) -> None:
    if not np.isfinite(data_range) or data_range <= 0:
        raise MetricError(f"Expected a positive data range, but got {data_range}")
