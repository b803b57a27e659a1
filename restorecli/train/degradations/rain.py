"""Synthetic rain streaks: sparse random drops smeared along a falling direction, added to the image.

A layer is built like the classic "Photoshop rain" recipe behind the Rain100L/H style data sets:
seed sparse drops of random brightness, widen them with a Gaussian, smear them with a linear
motion kernel, scale so an isolated streak peaks at the drawn intensity. Layers are composited
additively and clipped (``O = clip(B + R, 0, 1)``), the rain model of Rain100L/H (Yang et al. 2017),
so a model trained here sees the saturation it meets on those test sets. Streaks are grey (equal in
every channel), like real rain lit by diffuse light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import cv2
import numpy as np

from restorecli.errors import ConfigError
from restorecli.train.degradations.blur import convolve_valid, linear_motion_kernel
from restorecli.train.degradations.ranges import as_range, check_image, uniform

RainPreset = Literal["light", "medium", "heavy", "mixed"]
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
MIN_DROP_BRIGHTNESS = 0.5  # drops vary in brightness in [0.5, 1] x intensity


@dataclass(frozen=True)
class RainParams:
    """Rain-streak settings; every range is ``(low, high)`` and drawn uniformly per layer or per image.

    The defaults span light to heavy rain (the ``mixed`` preset), for training a model that handles both.

    Attributes:
        density_range: fraction of pixels that seed a drop, per layer.
        angle_range: streak direction in degrees from vertical, per image; positive angles fall towards the right.
        angle_jitter: each layer deviates from the image's angle by up to this many degrees.
        length_range: streak length in pixels.
        width_range: streak width (full width at half maximum) in pixels.
        intensity_range: brightness an isolated streak adds at its core, on ``[0, 1]``.
        layers_range: inclusive ``(min, max)`` number of layers (heavy rain has several depths).
    """

    density_range: tuple[float, float] = (0.001, 0.004)
    angle_range: tuple[float, float] = (-30.0, 30.0)
    angle_jitter: float = 5.0
    length_range: tuple[float, float] = (10.0, 40.0)
    width_range: tuple[float, float] = (0.8, 2.2)
    intensity_range: tuple[float, float] = (0.3, 0.65)
    layers_range: tuple[int, int] = (1, 2)

    def __post_init__(self) -> None:
        object.__setattr__(self, "density_range", as_range("density_range", self.density_range, 0.0, 1.0))
        object.__setattr__(self, "angle_range", as_range("angle_range", self.angle_range, -90.0, 90.0))
        if not 0.0 <= float(self.angle_jitter) <= 90.0:
            raise ConfigError(f"Expected angle_jitter in [0, 90], but got {self.angle_jitter!r}")
        object.__setattr__(self, "length_range", as_range("length_range", self.length_range, 0.0, 512.0))
        object.__setattr__(self, "width_range", as_range("width_range", self.width_range, 0.1, 32.0))
        object.__setattr__(self, "intensity_range", as_range("intensity_range", self.intensity_range, 0.0, 1.0))
        low, high = (int(v) for v in as_range("layers_range", self.layers_range, 1.0, 16.0))
        if tuple(self.layers_range) != (low, high):
            raise ConfigError(f"Expected whole numbers of layers, but got layers_range={self.layers_range!r}")
        object.__setattr__(self, "layers_range", (low, high))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> RainParams:
        """A named preset (``light``, ``medium``, ``heavy``, ``mixed``), with optional field overrides."""
        if name not in RAIN_PRESETS:
            raise ConfigError(f"Expected a rain preset among {', '.join(RAIN_PRESETS)}, but got {name!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"Expected rain settings among {', '.join(sorted(known))}, but got {', '.join(unknown)}")
        return replace(RAIN_PRESETS[name], **overrides)


RAIN_PRESETS: dict[str, RainParams] = {
    "light": RainParams(
        density_range=(0.001, 0.003), length_range=(10.0, 20.0), width_range=(0.8, 1.2),
        intensity_range=(0.3, 0.6), layers_range=(1, 1),
    ),
    "medium": RainParams(
        density_range=(0.002, 0.004), length_range=(15.0, 30.0), width_range=(1.0, 1.8),
        intensity_range=(0.3, 0.6), layers_range=(1, 2),
    ),
    "heavy": RainParams(
        density_range=(0.0015, 0.003), length_range=(25.0, 45.0), width_range=(1.5, 2.5),
        intensity_range=(0.3, 0.6), layers_range=(2, 3),
    ),
    "mixed": RainParams(),
}


def _streak_kernel(length: float, angle_from_vertical: float, width: float) -> np.ndarray:
    """A linear motion kernel along the falling direction, widened by a Gaussian of FWHM ``width``."""
    sigma = width / FWHM_PER_SIGMA
    radius = math.ceil(3.0 * sigma)
    size = 2 * (math.ceil(length / 2.0) + radius) + 1
    line = linear_motion_kernel(length, 90.0 + angle_from_vertical, size)
    return cv2.GaussianBlur(line, (2 * radius + 1, 2 * radius + 1), sigma, borderType=cv2.BORDER_CONSTANT)


def rain_layer(height: int, width: int, rng: np.random.Generator, params: RainParams) -> np.ndarray:
    """A ``(height, width)`` float32 streak layer in ``[0, 1]`` (0 = no rain), built from several layers."""
    base_angle = uniform(rng, params.angle_range)
    low, high = params.layers_range
    count = int(rng.integers(low, high + 1))
    total = np.zeros((height, width), dtype=np.float32)
    for _ in range(count):
        density = uniform(rng, params.density_range)
        angle = base_angle + params.angle_jitter * (2.0 * float(rng.random()) - 1.0)
        kernel = _streak_kernel(uniform(rng, params.length_range), angle, uniform(rng, params.width_range))
        intensity = uniform(rng, params.intensity_range)
        # Seed a margin as wide as the kernel, so streaks enter from outside the frame instead of
        # stopping at the border (which zero or mirrored padding would produce).
        margin = kernel.shape[0] // 2
        draws = rng.random((height + 2 * margin, width + 2 * margin), dtype=np.float32)
        drops = np.where(draws < density, 1.0 - (1.0 - MIN_DROP_BRIGHTNESS) * draws / max(density, 1e-12), 0.0)
        total += convolve_valid(drops.astype(np.float32), kernel * np.float32(intensity / float(kernel.max())))
    return np.clip(total, 0.0, 1.0)


def add_rain(image: np.ndarray, rng: np.random.Generator, params: RainParams) -> np.ndarray:
    """Rainy copy of a float image in ``[0, 1]``: ``clip(image + layer, 0, 1)``, float32, same shape."""
    image = check_image(image)
    layer = rain_layer(image.shape[0], image.shape[1], rng, params)
    if image.ndim == 3:
        layer = layer[:, :, None]
    return np.clip(image + layer, 0.0, 1.0)
