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
from torch import nn

from restorecli.data.resize import imresize
from restorecli.engine.padding import PadMode, crop, pad_to_multiple
from restorecli.errors import ConfigError
from restorecli.metrics.psnr_ssim import psnr, ssim
from restorecli.train.data import ValidationItem

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


@torch.no_grad()
def restore_float_image(
    model: nn.Module,
    image: np.ndarray,
    multiple: int,
    mode: PadMode,
    device: torch.device,
    autocast: torch.dtype | None,
) -> np.ndarray:
    """Run ``model`` on one float ``(H, W, C)`` image, padded to its multiple and cropped back.

    Unlike the engine's ``restore_array`` (integer pixels), this keeps the float input of the
    denoising protocol (unclipped, unquantised noise); padding is the engine's. A network whose
    output is ``s`` times its input (super-resolution) returns ``(s * H, s * W, C)``: the output of
    the padding is cropped away at ``s`` times its size.
    """
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)
    height, width = x.shape[-2:]
    padded = pad_to_multiple(x, multiple, mode)
    with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        y = model(padded)
    scale = y.shape[-1] // padded.shape[-1]
    return crop(y, scale * height, scale * width)[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def input_baseline(degraded: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 input pixels as scored against a target of ``shape``: MATLAB-bicubic upscaled when smaller."""
    return degraded if degraded.shape == shape else imresize(degraded, output_shape=shape[:2])


def validate(
    model: nn.Module,
    items: Sequence[ValidationItem],
    *,
    multiple: int,
    mode: PadMode,
    device: torch.device,
    crop_border: int = 0,
    y_channel: bool = False,
    autocast: torch.dtype | None = None,
) -> ValidationScores:
    """Mean PSNR/SSIM of the model's outputs and of the degraded inputs against the clean images.

    Raises:
        ConfigError: an output whose size differs from its clean image (a network of another scale).
    """
    was_training = model.training
    model.eval()
    scores = []
    for item in items:
        output = to_uint8(restore_float_image(model, item.degraded, multiple, mode, device, autocast))
        clean = to_uint8(item.clean)
        if output.shape != clean.shape:
            raise ConfigError(
                f"Expected network outputs the size of the clean validation images, but got "
                f"{output.shape[1]}x{output.shape[0]} for {clean.shape[1]}x{clean.shape[0]} ({item.name})"
            )
        degraded = input_baseline(to_uint8(item.degraded), clean.shape)
        options = {"data_range": _DATA_RANGE, "crop_border": crop_border, "y_channel": y_channel}
        scores.append(
            (
                psnr(output, clean, **options),
                ssim(output, clean, **options),
                psnr(degraded, clean, **options),
                ssim(degraded, clean, **options),
            )
        )
    model.train(was_training)
    means = np.mean(np.array(scores, dtype=np.float64), axis=0) if scores else np.full(4, np.nan)
    return ValidationScores(*(float(m) for m in means), images=len(scores))
