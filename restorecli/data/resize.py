"""MATLAB-compatible bicubic ``imresize``, and ``restore degrade downscale`` (LR inputs for super-resolution).

Super-resolution papers make their low-resolution inputs with MATLAB's ``imresize(hr, 1/s, 'bicubic')``
(Set5, Set14, B100, Urban100, Manga109, DIV2K's ``LR_bicubic``), and a network trained on other
LR images scores lower on them. This module reproduces MATLAB's algorithm (``imresize.m``):

- the cubic convolution kernel with ``a = -0.5`` (Keys 1981), support 4 samples;
- when shrinking, the kernel is stretched by ``1/scale`` and scaled by ``scale`` (antialiasing),
  so each output pixel averages every input pixel it covers;
- input coordinate of output pixel ``x`` (1-based): ``u = x / scale + 0.5 * (1 - 1 / scale)``;
  taps outside the image are mirrored (symmetric padding: ``... 2 1 | 1 2 3 ... n | n n-1 ...``);
- separable passes, the dimension with the smaller scale first (rows first on a tie); integer
  images are rounded (half away from zero) and clipped to their type after every pass, as MATLAB
  keeps the class between passes; float images stay unclipped floats;
- output size ``ceil(scale * size)`` per side.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from tqdm import tqdm

from restorecli.errors import ConfigError, ImageReadError, ImageWriteError
from restorecli.images import read_array, write_array

if TYPE_CHECKING:  # the file machinery loads OpenCV; imresize alone does not need it
    from restorecli.data.degradations.files import DegradeSummary

# Keys' cubic convolution parameter in MATLAB's bicubic kernel.
CUBIC_A = -0.5
# The unscaled cubic kernel is non-zero on (-2, 2).
CUBIC_SUPPORT = 4.0

DownscaleFormat = Literal["auto", "png"]


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with ``a = -0.5`` (MATLAB's ``cubic``), zero beyond ``|x| = 2``."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    near = (CUBIC_A + 2) * ax3 - (CUBIC_A + 3) * ax2 + 1
    far = CUBIC_A * ax3 - 5 * CUBIC_A * ax2 + 8 * CUBIC_A * ax - 4 * CUBIC_A
    return np.where(ax <= 1, near, np.where(ax <= 2, far, 0.0))


def contributions(
    in_length: int, out_length: int, scale: float, antialiasing: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Weights and 0-based source indices ``(out_length, taps)`` of one resize pass (MATLAB ``contributions``).

    Each row's weights sum to 1; indices past either end are mirrored back into the image.
    """
    stretch = scale < 1 and antialiasing
    width = CUBIC_SUPPORT / scale if stretch else CUBIC_SUPPORT
    positions = np.arange(1, out_length + 1, dtype=np.float64)
    centres = positions / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(centres - width / 2)
    taps = math.ceil(width) + 2
    indices = left[:, None] + np.arange(taps)[None, :]  # 1-based, may fall outside [1, in_length]
    distance = centres[:, None] - indices
    weights = scale * cubic(scale * distance) if stretch else cubic(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    used = np.any(weights != 0, axis=0)  # MATLAB drops tap columns that are zero for every output
    return weights[:, used], indices[:, used]


def _resize_axis(image: np.ndarray, axis: int, weights: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """One separable pass along ``axis`` in float64: a weighted sum of gathered rows (or columns)."""
    shape = [1] * image.ndim
    shape[axis] = weights.shape[0]
    out = np.zeros(image.shape[:axis] + (weights.shape[0],) + image.shape[axis + 1 :], dtype=np.float64)
    for tap in range(weights.shape[1]):
        out += weights[:, tap].reshape(shape) * np.take(image, indices[:, tap], axis=axis)
    return out


def _round_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """MATLAB's conversion to an integer class: round half away from zero, saturate."""
    limits = np.iinfo(dtype)
    return np.clip(np.floor(values + 0.5), limits.min, limits.max).astype(dtype)


def imresize(
    image: np.ndarray,
    scale: float | None = None,
    output_shape: tuple[int, int] | None = None,
    *,
    antialiasing: bool = True,
) -> np.ndarray:
    """Bicubic resize of ``(H, W)`` or ``(H, W, C)`` pixels exactly as MATLAB's ``imresize`` (see the module docstring).

    Args:
        image: uint8/uint16 pixels or a float image; channels are resized independently.
        scale: output size / input size, e.g. ``0.25`` for x4 downscaling; output ``ceil(scale * size)``.
        output_shape: ``(height, width)`` instead of ``scale`` (each side's scale is then ``out / in``).
        antialiasing: widen the kernel when shrinking (MATLAB's default).

    Returns:
        The resized image, same dtype (integers rounded and clipped, floats not clipped).

    Raises:
        ConfigError: neither or both of ``scale`` and ``output_shape``, a non-positive size or scale,
            or an image that is not 2-D/3-D uint8, uint16 or float.
    """
    if image.ndim not in (2, 3) or not (
        image.dtype in (np.uint8, np.uint16) or np.issubdtype(image.dtype, np.floating)
    ):
        raise ConfigError(f"Expected (H, W[, C]) uint8, uint16 or float pixels, but got {image.dtype} {image.shape}")
    if (scale is None) == (output_shape is None):
        raise ConfigError(f"Expected exactly one of scale and output_shape, but got {scale!r} and {output_shape!r}")
    in_shape = image.shape[:2]
    if output_shape is None:
        if scale is None or not scale > 0:
            raise ConfigError(f"Expected a scale > 0, but got {scale!r}")
        scales = (float(scale), float(scale))
        out_shape = tuple(math.ceil(scale * size) for size in in_shape)
    else:
        out_shape = tuple(int(size) for size in output_shape)
        if len(out_shape) != 2 or min(out_shape) < 1:
            raise ConfigError(f"Expected an output (height, width) of positive sizes, but got {output_shape!r}")
        scales = (out_shape[0] / in_shape[0], out_shape[1] / in_shape[1])
    integer = not np.issubdtype(image.dtype, np.floating)
    result: np.ndarray = image
    for axis in sorted((0, 1), key=lambda dim: scales[dim]):  # stable: rows first on a tie
        weights, indices = contributions(in_shape[axis], out_shape[axis], scales[axis], antialiasing)
        resized = _resize_axis(result, axis, weights, indices)
        result = _round_to(resized, image.dtype) if integer else resized
    return result.astype(image.dtype, copy=False)


def downscale_files(
    input_path: Path,
    output: Path,
    scale: int,
    *,
    output_format: DownscaleFormat = "auto",
    progress: bool = True,
) -> DegradeSummary:
    """Write MATLAB-bicubic ``1/scale`` copies of the images under ``input_path`` (SR inputs).

    Bit depth is kept (8 or 16 bit) and alpha is resized with the colour; writes are atomic and
    inputs are never overwritten (the folder and naming rules of ``restore degrade``). A side that
    is not a multiple of ``scale`` gives ``ceil(side / scale)`` pixels, as MATLAB does: crop the
    high-resolution images to multiples of ``scale`` first to keep them aligned. A file that cannot
    be read or written is recorded in ``failed`` and skipped.

    Returns:
        What was written and skipped (kind ``downscale``).

    Raises:
        ConfigError: ``scale`` below 2 or an unknown output format.
    """
    from restorecli.data.degradations.files import DegradeSummary, plan_outputs

    if int(scale) != scale or scale < 2:
        raise ConfigError(f"Expected an integer downscaling factor >= 2, but got {scale!r}")
    plan = plan_outputs(input_path, output, output_format)
    started = time.perf_counter()
    written: list[Path] = []
    failed: list[tuple[Path, str]] = []
    for source, target in tqdm(plan, desc=f"downscale x{scale}", unit="img", disable=not progress):
        try:
            write_array(target, imresize(read_array(source), 1 / scale))
        except (ImageReadError, ImageWriteError) as exc:
            failed.append((source, str(exc)))
        else:
            written.append(target)
    settings: dict[str, Any] = {"scale": int(scale), "format": output_format, "kernel": "matlab-bicubic"}
    output_folder = plan[0][1].parent if len(plan) == 1 else Path(output)
    return DegradeSummary(
        "downscale", output_folder, tuple(written), tuple(failed), time.perf_counter() - started, settings
    )
