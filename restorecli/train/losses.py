"""Training losses on ``(N, C, H, W)`` tensors in ``[0, 1]``.

``psnr`` follows NAFNet's PSNRLoss (minimising ``10 * log10(MSE)`` per image, averaged over the batch),
which weights each image's error relative to its own level; ``charbonnier`` is the smooth L1 of
MPRNet/Restormer-era papers; the optional FFT term is an L1 distance between the real and imaginary
parts of the 2-D spectra, which pushes high frequencies (edges, texture) that a pixel loss under-weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from restorecli.train.recipe import LossSection

_PSNR_EPS = 1e-8


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return (pred - target).abs().mean()


def charbonnier_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Mean of ``sqrt(diff^2 + eps^2)``: L1 away from zero, quadratic (differentiable) near it."""
    return torch.sqrt((pred - target) ** 2 + eps * eps).mean()


def psnr_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Negative PSNR in dB for data range 1, averaged over images: ``mean(10 * log10(mse_i))``."""
    mse = ((pred - target) ** 2).flatten(1).mean(dim=1)
    return (10.0 / math.log(10.0)) * torch.log(mse + _PSNR_EPS).mean()


def fft_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of the real and imaginary parts of the orthonormal 2-D FFTs."""
    diff = torch.fft.rfft2(pred.float(), norm="ortho") - torch.fft.rfft2(target.float(), norm="ortho")
    return torch.view_as_real(diff).abs().mean()


def build_loss(section: LossSection) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The recipe's pixel loss plus ``fft_weight`` times the FFT term, as one callable."""
    if section.kind == "charbonnier":
        eps = section.charbonnier_eps

        def pixel(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return charbonnier_loss(pred, target, eps)

    else:
        pixel = {"l1": l1_loss, "psnr": psnr_loss}[section.kind]
    if section.fft_weight == 0:
        return pixel
    weight = section.fft_weight

    def total(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return pixel(pred, target) + weight * fft_l1_loss(pred, target)

    return total
