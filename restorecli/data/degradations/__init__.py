"""Synthetic degradations (Gaussian noise, motion blur, rain streaks, bicubic downscaling) for training and evaluation sets.

Pure numpy/OpenCV and cheap (milliseconds per 256x256 patch), so the training loop can call
:func:`degrade` per patch in its DataLoader workers, and ``restore degrade`` writes the same
degradations to files with :func:`degrade_files`. Images are float ``(H, W[, C])`` in ``[0, 1]``;
all randomness comes from the ``numpy.random.Generator`` passed in.

Example:
    >>> rng = np.random.default_rng(0)
    >>> noisy = degrade("noise", patch, rng, NoiseParams(sigma_range=(0, 50)))
    >>> blurred, kernel = degrade("blur", patch, rng, BlurParams(kind="shake"), return_kernel=True)
    >>> rainy = degrade("rain", patch, rng, RainParams.preset("heavy"))
    >>> low_res = degrade("downscale", patch, rng, DownscaleParams(scale=4))  # (H/4, W/4, C)
"""

from __future__ import annotations

from restorecli.data.degradations.blur import (
    BlurParams,
    KernelKind,
    apply_kernel,
    linear_motion_kernel,
    random_motion_kernel,
    shake_kernel,
    shake_trajectory,
)
from restorecli.data.degradations.core import (
    KINDS,
    DegradationKind,
    DegradationParams,
    degrade,
    make_params,
    size_factor,
)
from restorecli.data.degradations.downscale import DownscaleParams, bicubic_downscale
from restorecli.data.degradations.files import (
    DegradeSummary,
    NoiseSeeding,
    OutputFormat,
    degrade_files,
    degrade_pixels,
    image_rng,
    plan_outputs,
)
from restorecli.data.degradations.noise import NoiseParams, add_gaussian_noise, benchmark_gaussian_noise
from restorecli.data.degradations.rain import RAIN_PRESETS, RainParams, RainPreset, add_rain, rain_layer

__all__ = [
    "KINDS",
    "RAIN_PRESETS",
    "BlurParams",
    "DegradationKind",
    "DegradationParams",
    "DegradeSummary",
    "DownscaleParams",
    "KernelKind",
    "NoiseParams",
    "NoiseSeeding",
    "OutputFormat",
    "RainParams",
    "RainPreset",
    "add_gaussian_noise",
    "add_rain",
    "apply_kernel",
    "benchmark_gaussian_noise",
    "bicubic_downscale",
    "degrade",
    "degrade_files",
    "degrade_pixels",
    "image_rng",
    "linear_motion_kernel",
    "make_params",
    "plan_outputs",
    "rain_layer",
    "random_motion_kernel",
    "shake_kernel",
    "shake_trajectory",
    "size_factor",
]
