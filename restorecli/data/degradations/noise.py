"""Additive white Gaussian noise, on the fly and in the denoising papers' benchmark protocol.

σ is always on the 8-bit scale ``[0, 255]`` (σ = 25 means a standard deviation of 25/255 on ``[0, 1]``
pixels), whatever the bit depth of the image, as in the DnCNN/FFDNet/Restormer literature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from restorecli.data.degradations.ranges import as_range, check_image, uniform
from restorecli.errors import ConfigError

DEFAULT_SIGMA = 25.0
EIGHT_BIT_MAX = 255


@dataclass(frozen=True)
class NoiseParams:
    """Gaussian noise settings.

    Attributes:
        sigma: fixed σ on the 0-255 scale (non-blind); 25 when neither ``sigma`` nor ``sigma_range`` is given.
        sigma_range: ``(low, high)``: σ is drawn uniformly per call (blind denoising, e.g. ``(0, 50)``).
            Give one of ``sigma`` and ``sigma_range``, not both.
        clip: clip the noisy image to ``[0, 1]``. Off by default because the benchmark protocol feeds
            the unclipped float image to the network.
        quantize: round to 8-bit levels (``round(x * 255) / 255``), as if the noisy image had been
            saved as an 8-bit file. Off by default for the same reason.
        grey_noise: when the image's channels are all equal (a grey picture stored as RGB), draw one
            noise plane for every channel, as a grey scan or sensor has. Off by default so the random
            streams of existing noisy sets stay the same; training a colour network for grey inputs
            needs it, since independent noise on a grey image is not what grey inputs carry.
    """

    sigma: float | None = None
    sigma_range: tuple[float, float] | None = None
    clip: bool = False
    quantize: bool = False
    grey_noise: bool = False

    def __post_init__(self) -> None:
        if self.sigma is not None and self.sigma_range is not None:
            raise ConfigError(
                f"Expected either sigma or sigma_range, but got both ({self.sigma!r} and {self.sigma_range!r})"
            )
        if self.sigma_range is not None:
            object.__setattr__(self, "sigma_range", as_range("sigma_range", self.sigma_range, 0.0))
            return
        sigma = DEFAULT_SIGMA if self.sigma is None else float(self.sigma)
        if not sigma >= 0.0:
            raise ConfigError(f"Expected sigma >= 0, but got {self.sigma!r}")
        object.__setattr__(self, "sigma", sigma)

    def draw_sigma(self, rng: np.random.Generator) -> float:
        """The σ of one call: the fixed one, or a uniform draw from ``sigma_range``."""
        if self.sigma_range is not None:
            return uniform(rng, self.sigma_range)
        return float(self.sigma)  # type: ignore[arg-type]


def finish_noisy(noisy: np.ndarray, clip: bool, quantize: bool, levels: int = EIGHT_BIT_MAX) -> np.ndarray:
    """Apply the optional clipping to ``[0, 1]`` and rounding to ``levels`` steps (255 or 65535)."""
    if clip:
        noisy = np.clip(noisy, 0.0, 1.0)
    if quantize:
        noisy = np.round(noisy * np.float32(levels)) / np.float32(levels)
    return noisy.astype(np.float32, copy=False)


def is_grey(image: np.ndarray) -> bool:
    """True for ``(H, W)`` and ``(H, W, 1)`` images and for those whose colour channels are all equal."""
    if image.ndim == 2 or image.shape[2] == 1:
        return True
    return bool((image[:, :, 1:] == image[:, :, :1]).all())


def add_gaussian_noise(image: np.ndarray, rng: np.random.Generator, params: NoiseParams) -> np.ndarray:
    """Noisy copy of a float image in ``[0, 1]`` (any shape), float32, for on-the-fly training.

    The noise is float32 from ``rng.standard_normal``: i.i.d. per pixel and channel, as in the papers,
    and ~4x cheaper than the float64 legacy generator the benchmark protocol needs.
    """
    image = check_image(image)
    sigma = params.draw_sigma(rng)
    shape = image.shape
    if params.grey_noise and is_grey(image):
        shape = (*image.shape[:2], 1)
    noise = rng.standard_normal(shape, dtype=np.float32)
    noisy = image + noise * np.float32(sigma / EIGHT_BIT_MAX)
    return finish_noisy(noisy, params.clip, params.quantize)


def benchmark_gaussian_noise(pixels: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """The noisy input of the Gaussian-denoising test scripts, bit for bit.

    Reproduces Restormer's ``test_gaussian_color_denoising.py`` and KAIR's ``main_test_dncnn.py``:
    ``img = np.float32(pixels) / 255.; np.random.seed(seed); img += np.random.normal(0, sigma / 255., img.shape)``
    — a float32 image plus float64 legacy-MT19937 noise, stored back as float32, neither clipped nor
    quantized. A private ``RandomState(seed)`` draws the same numbers as the global ``np.random.seed``
    without touching global state. 16-bit pixels are divided by 65535 instead of 255; σ stays on the 8-bit scale.

    Args:
        pixels: ``(H, W)`` or ``(H, W, C)`` uint8/uint16 pixels, channels in RGB order (as the scripts load them).
        sigma: noise standard deviation on the 0-255 scale.
        seed: the per-image seed (0 in the papers' scripts).

    Returns:
        float32 array of ``pixels.shape``, nominally in ``[0, 1]`` but unclipped.
    """
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ConfigError(f"Expected uint8 or uint16 pixels for the benchmark protocol, but got {pixels.dtype}")
    image = pixels.astype(np.float32) / np.float32(np.iinfo(pixels.dtype).max)
    image += np.random.RandomState(seed).normal(0, sigma / 255.0, image.shape)
    return image
