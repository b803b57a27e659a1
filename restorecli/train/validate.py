"""Validation during and after training, scored with the same functions as ``restore eval``.

Outputs and inputs are rounded to 8-bit pixels before scoring, as the files ``restore derain|deblur|
denoise`` and ``restore degrade`` write would be, so a validation PSNR here equals what
``restore eval`` reports on those files.

Super-resolution inputs are smaller than their targets; their "input" scores are those of the
MATLAB-bicubic upscaled input, the baseline SR papers compare against.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from restorecli.data.resize import imresize
from restorecli.engine.options import RunOptions
from restorecli.engine.runner import restore_tensor
from restorecli.errors import ConfigError
from restorecli.metrics.psnr_ssim import psnr, ssim
from restorecli.train.data import ValidationItem
from restorecli.zoo.descriptor import ModelDescriptor

_DATA_RANGE = 255


@dataclass(frozen=True)
class ValidationScores:
    """Mean scores over the validation images (dB for PSNR)."""

    psnr: float
    ssim: float
    input_psnr: float
    input_ssim: float
    images: int


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float ``[0, 1]`` pixels rounded to uint8, as an image writer stores them."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def restore_float_image(descriptor: ModelDescriptor, image: np.ndarray, options: RunOptions) -> np.ndarray:
    """Restore one float ``(H, W, C)`` image through the engine, as inference would run the model.

    Unlike :func:`~restorecli.engine.runner.restore_array` (integer pixels), this keeps the float
    input of the denoising protocol (unclipped, unquantised noise). A super-resolution model returns
    ``(s * H, s * W, C)``.
    """
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    return restore_tensor(descriptor, x, options)[0].permute(1, 2, 0).numpy()


def input_baseline(degraded: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 input pixels as scored against a target of ``shape``: MATLAB-bicubic upscaled when smaller."""
    return degraded if degraded.shape == shape else imresize(degraded, output_shape=shape[:2])


def validate(
    descriptor: ModelDescriptor,
    items: Sequence[ValidationItem],
    *,
    options: RunOptions,
    crop_border: int = 0,
    y_channel: bool = False,
) -> ValidationScores:
    """Mean PSNR/SSIM of the model's outputs and of the degraded inputs against the clean images.

    The model runs through the engine (:func:`~restorecli.engine.runner.restore_tensor`) with
    ``options``, so a validation score is what ``restore`` itself would produce.

    Raises:
        ConfigError: an output whose size differs from its clean image (a network of another scale).
    """
    model = descriptor.module
    was_training = model.training
    model.eval()
    scores = []
    for item in items:
        output = to_uint8(restore_float_image(descriptor, item.degraded, options))
        clean = to_uint8(item.clean)
        if output.shape != clean.shape:
            raise ConfigError(
                f"Expected network outputs the size of the clean validation images, but got "
                f"{output.shape[1]}x{output.shape[0]} for {clean.shape[1]}x{clean.shape[0]} ({item.name})"
            )
        degraded = input_baseline(to_uint8(item.degraded), clean.shape)
        protocol = {"data_range": _DATA_RANGE, "crop_border": crop_border, "y_channel": y_channel}
        scores.append(
            (
                psnr(output, clean, **protocol),
                ssim(output, clean, **protocol),
                psnr(degraded, clean, **protocol),
                ssim(degraded, clean, **protocol),
            )
        )
    model.train(was_training)
    means = np.mean(np.array(scores, dtype=np.float64), axis=0) if scores else np.full(4, np.nan)
    return ValidationScores(*(float(m) for m in means), images=len(scores))
