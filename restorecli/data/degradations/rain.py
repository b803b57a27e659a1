"""Synthetic rain: streak layers of blurred drops, composited additively or by screen, under an optional veil.

Every preset follows the recipe the benchmark sets were made with ("Photoshop rain"): sparse
noise seeds of random brightness, a Gaussian blur (the streak width), a motion blur along the
falling direction (the streak length). The two blurs are one separable kernel here, so a layer
costs one FFT convolution whatever its length. Layers of different density, width and
brightness stack like rain at several depths. Streaks are grey (equal in every channel), like
rain lit by diffuse light.

Composition, per preset:

* ``add``: ``O = clip(B + S, 0, 1)``, the Rain100L/H model (Yang et al., "Deep Joint Rain
  Detection and Removal from a Single Image", CVPR 2017, JORDER).
* ``screen``: ``O = 1 - (1 - B)(1 - S)``, Photoshop's screen blending, used for Rain800/Test100
  (Zhang et al., ID-CGAN, 2017) and Rain1400 (Fu et al., "Removing rain from single images via
  a deep detail network", CVPR 2017, DDN): streaks fade on bright backgrounds instead of clipping.
* with a veil (``transmission_range`` below 1): JORDER's heavy rain model
  ``O = alpha * (B + sum_i S_i) + (1 - alpha) * A``, where the accumulation of distant drops acts
  like fog: transmission ``alpha`` (optionally varying smoothly over the image) and a grey
  atmospheric light ``A``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import cv2
import numpy as np

from restorecli.data.degradations.blur import convolve_valid, linear_motion_kernel
from restorecli.data.degradations.ranges import as_range, check_image, uniform
from restorecli.errors import ConfigError

RainPreset = Literal["light", "medium", "mixed", "rain100l", "rain100h", "photoshop", "heavy", "mixture"]
Blend = Literal["add", "screen"]
BLENDS: tuple[str, ...] = ("add", "screen")
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
MIN_DROP_BRIGHTNESS = 0.5  # drops vary in brightness in [0.5, 1] x intensity
FIELD_CELL = 64  # pixels between the control points of smooth random fields (rain density, veil)


@dataclass(frozen=True)
class RainParams:
    """Rain settings; every range is ``(low, high)`` and drawn uniformly per layer or per image.

    The defaults are the ``mixed`` preset of version 0.1 (thin additive streaks, light to heavy);
    the benchmark-like presets are in :data:`RAIN_PRESETS`. Features that are off by default draw
    no random numbers, so a 0.1 preset still gives the same rain for the same seed.

    Attributes:
        density_range: fraction of pixels that seed a drop, per layer.
        angle_range: streak direction in degrees from vertical, per image; positive angles fall towards the right.
        angle_jitter: each layer deviates from the image's angle by up to this many degrees.
        length_range: streak length in pixels, per layer.
        width_range: streak width (full width at half maximum) in pixels, per layer.
        intensity_range: brightness an isolated streak adds at its core, on ``[0, 1]``, per layer.
        layers_range: inclusive ``(min, max)`` number of layers (rain at several depths).
        taper: how much a streak fades towards its ends (0 = uniform as a motion blur, 1 = to zero),
            as a drop crossing the exposure in and out of focus does.
        modulation: depth of a smooth random dimming of the streaks over the image (0 = uniform
            rain, 1 = patches without rain), as gusts make rain uneven.
        blend: ``add`` (clip(B + S)) or ``screen`` (1 - (1 - B)(1 - S)).
        transmission_range: JORDER's scene transmission alpha, per image; ``(1, 1)`` = no veil.
        transmission_variation: alpha varies smoothly by up to this much around its drawn value.
        atmosphere_range: grey atmospheric light A of the veil, per image.
        mixture: ``(preset, weight)`` pairs; when given, each call draws one preset with these
            weights (the other fields must keep their defaults). A TOML table ``{ rain100h = 2 }`` works too.
    """

    density_range: tuple[float, float] = (0.001, 0.004)
    angle_range: tuple[float, float] = (-30.0, 30.0)
    angle_jitter: float = 5.0
    length_range: tuple[float, float] = (10.0, 40.0)
    width_range: tuple[float, float] = (0.8, 2.2)
    intensity_range: tuple[float, float] = (0.3, 0.65)
    layers_range: tuple[int, int] = (1, 2)
    taper: float = 0.0
    modulation: float = 0.0
    blend: Blend = "add"
    transmission_range: tuple[float, float] = (1.0, 1.0)
    transmission_variation: float = 0.0
    atmosphere_range: tuple[float, float] = (0.8, 0.95)
    mixture: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "density_range", as_range("density_range", self.density_range, 0.0, 1.0))
        object.__setattr__(self, "angle_range", as_range("angle_range", self.angle_range, -90.0, 90.0))
        _check_fraction("angle_jitter", self.angle_jitter, 90.0)
        object.__setattr__(self, "length_range", as_range("length_range", self.length_range, 0.0, 512.0))
        object.__setattr__(self, "width_range", as_range("width_range", self.width_range, 0.1, 32.0))
        object.__setattr__(self, "intensity_range", as_range("intensity_range", self.intensity_range, 0.0, 1.0))
        low, high = (int(v) for v in as_range("layers_range", self.layers_range, 1.0, 16.0))
        if tuple(self.layers_range) != (low, high):
            raise ConfigError(f"Expected whole numbers of layers, but got layers_range={self.layers_range!r}")
        object.__setattr__(self, "layers_range", (low, high))
        object.__setattr__(self, "taper", _check_fraction("taper", self.taper))
        object.__setattr__(self, "modulation", _check_fraction("modulation", self.modulation))
        if self.blend not in BLENDS:
            raise ConfigError(f"Expected blend among {', '.join(BLENDS)}, but got {self.blend!r}")
        transmission = as_range("transmission_range", self.transmission_range, 0.0, 1.0)
        object.__setattr__(self, "transmission_range", transmission)
        variation = _check_fraction("transmission_variation", self.transmission_variation)
        object.__setattr__(self, "transmission_variation", variation)
        object.__setattr__(self, "atmosphere_range", as_range("atmosphere_range", self.atmosphere_range, 0.0, 1.0))
        object.__setattr__(self, "mixture", _as_mixture(self.mixture))
        if self.mixture:
            changed = [f.name for f in fields(self) if f.name != "mixture" and getattr(self, f.name) != f.default]
            if changed:
                raise ConfigError(
                    "Expected no other rain settings beside a mixture (set them in its presets), "
                    f"but got {', '.join(changed)}"
                )

    @property
    def veiled(self) -> bool:
        """Whether the heavy-rain veil (transmission below 1) is applied."""
        return self.transmission_range != (1.0, 1.0)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> RainParams:
        """A named preset of :data:`RAIN_PRESETS`, with optional field overrides."""
        if name not in RAIN_PRESETS:
            raise ConfigError(f"Expected a rain preset among {', '.join(RAIN_PRESETS)}, but got {name!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"Expected rain settings among {', '.join(sorted(known))}, but got {', '.join(unknown)}")
        return replace(RAIN_PRESETS[name], **overrides)


def _check_fraction(name: str, value: float, maximum: float = 1.0) -> float:
    if not 0.0 <= float(value) <= maximum:
        raise ConfigError(f"Expected {name} in [0, {maximum:g}], but got {value!r}")
    return float(value)


def _as_mixture(value: Mapping[str, float] | Sequence[Sequence[Any]]) -> tuple[tuple[str, float], ...]:
    """Validate ``(preset, weight)`` pairs (or a ``{preset: weight}`` table) naming single-model presets."""
    pairs = list(value.items()) if isinstance(value, Mapping) else [tuple(pair) for pair in value]
    mixture: list[tuple[str, float]] = []
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str) or isinstance(pair[1], (str, bool)):
            raise ConfigError(f"Expected mixture entries as (preset, weight), but got {pair!r}")
        name, weight = pair[0], float(pair[1])
        component = RAIN_PRESETS.get(name)
        if component is None or component.mixture:
            single = [key for key, params in RAIN_PRESETS.items() if not params.mixture]
            raise ConfigError(f"Expected mixture presets among {', '.join(single)}, but got {name!r}")
        if not weight >= 0.0 or math.isinf(weight):
            raise ConfigError(f"Expected a finite mixture weight >= 0, but got {name}={pair[1]!r}")
        mixture.append((name, weight))
    if mixture and sum(weight for _, weight in mixture) <= 0.0:
        raise ConfigError(f"Expected at least one positive mixture weight, but got {mixture!r}")
    return tuple(mixture)


RAIN_PRESETS: dict[str, RainParams] = {
    # Version 0.1's thin additive streaks, kept for the recipes and cards that name them.
    "light": RainParams(
        density_range=(0.001, 0.003),
        length_range=(10.0, 20.0),
        width_range=(0.8, 1.2),
        intensity_range=(0.3, 0.6),
        layers_range=(1, 1),
    ),
    "medium": RainParams(
        density_range=(0.002, 0.004),
        length_range=(15.0, 30.0),
        width_range=(1.0, 1.8),
        intensity_range=(0.3, 0.6),
        layers_range=(1, 2),
    ),
    "mixed": RainParams(),
}
RAIN_PRESETS.update(
    {
        # Rain100L (JORDER, Yang et al. CVPR 2017): one kind of streak, sparse and light, one direction.
        "rain100l": RainParams(
            density_range=(0.0008, 0.002),
            angle_range=(-30.0, 30.0),
            angle_jitter=0.0,
            length_range=(15.0, 35.0),
            width_range=(1.2, 2.0),
            intensity_range=(0.3, 0.55),
            layers_range=(1, 1),
            taper=0.5,
        ),
        # Rain100H (same paper): five streak directions overlaid, dense, long, wide and bright.
        "rain100h": RainParams(
            density_range=(0.0004, 0.0009),
            angle_range=(-25.0, 25.0),
            angle_jitter=12.0,
            length_range=(30.0, 70.0),
            width_range=(2.5, 4.0),
            intensity_range=(0.5, 0.85),
            layers_range=(5, 5),
            taper=0.5,
            modulation=0.3,
        ),
        # Rain800/Test100 (ID-CGAN, Zhang et al. 2017) and Rain1400 (DDN, Fu et al. CVPR 2017):
        # Photoshop streak layers, one to five depths, angles to +-45 degrees, screen blending.
        "photoshop": RainParams(
            density_range=(0.0005, 0.0025),
            angle_range=(-45.0, 45.0),
            angle_jitter=5.0,
            length_range=(4.0, 80.0),
            width_range=(1.0, 4.0),
            intensity_range=(0.2, 0.75),
            layers_range=(1, 5),
            taper=0.6,
            modulation=0.5,
            blend="screen",
        ),
        # JORDER's heavy rain: dense streaks under a veil of accumulated drops.
        "heavy": RainParams(
            density_range=(0.0006, 0.0015),
            angle_range=(-30.0, 30.0),
            angle_jitter=10.0,
            length_range=(20.0, 60.0),
            width_range=(1.5, 3.5),
            intensity_range=(0.4, 0.8),
            layers_range=(2, 4),
            taper=0.5,
            modulation=0.3,
            transmission_range=(0.6, 0.95),
            transmission_variation=0.1,
            atmosphere_range=(0.75, 0.95),
        ),
    }
)
# What the benchmark-like default draws from, per training patch.
MIXTURE_WEIGHTS: tuple[tuple[str, float], ...] = (
    ("rain100l", 0.25),
    ("rain100h", 0.3),
    ("photoshop", 0.3),
    ("heavy", 0.15),
)
RAIN_PRESETS["mixture"] = RainParams(mixture=MIXTURE_WEIGHTS)


def pick_component(params: RainParams, rng: np.random.Generator) -> RainParams:
    """The parameters one call uses: ``params`` itself, or a preset drawn from its mixture (one draw)."""
    if not params.mixture:
        return params
    weights = np.array([weight for _, weight in params.mixture])
    index = int(np.searchsorted(np.cumsum(weights) / weights.sum(), float(rng.random()), side="right"))
    return RAIN_PRESETS[params.mixture[min(index, len(weights) - 1)][0]]


def streak_kernel(length: float, angle_from_vertical: float, width: float, taper: float = 0.0) -> np.ndarray:
    """A linear motion kernel along the falling direction, widened by a Gaussian of FWHM ``width``.

    With ``taper`` the kernel fades along the streak towards ``1 - taper`` at its ends (a squared
    cosine). The kernel is not normalised: callers scale it to the streak brightness they want.
    """
    sigma = width / FWHM_PER_SIGMA
    radius = math.ceil(3.0 * sigma)
    size = 2 * (math.ceil(length / 2.0) + radius) + 1
    line = linear_motion_kernel(length, 90.0 + angle_from_vertical, size)
    kernel = cv2.GaussianBlur(line, (2 * radius + 1, 2 * radius + 1), sigma, borderType=cv2.BORDER_CONSTANT)
    if taper > 0.0:
        offsets = np.arange(size, dtype=np.float32) - size // 2
        radians = math.radians(angle_from_vertical)
        along = np.abs(offsets[None, :] * math.sin(radians) + offsets[:, None] * math.cos(radians))
        position = np.minimum(along / (length / 2.0 + radius), 1.0)
        kernel = kernel * (1.0 - taper * np.sin(0.5 * math.pi * position) ** 2)
    return kernel


def smooth_field(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(height, width)`` float32 random field in ``[0, 1]``, smooth over :data:`FIELD_CELL` pixels."""
    rows, cols = height // FIELD_CELL + 2, width // FIELD_CELL + 2
    grid = rng.random((rows, cols), dtype=np.float32)
    field = cv2.resize(grid, (cols * FIELD_CELL, rows * FIELD_CELL), interpolation=cv2.INTER_CUBIC)
    top, left = FIELD_CELL // 2, FIELD_CELL // 2  # skip the clamped half cell at the border
    return np.clip(field[top : top + height, left : left + width], 0.0, 1.0)


def rain_layer(height: int, width: int, rng: np.random.Generator, params: RainParams) -> np.ndarray:
    """The ``(height, width)`` float32 streak layer ``S`` in ``[0, 1]`` (0 = no rain), all layers summed.

    A mixture first draws one of its presets. The veil is not part of the layer (see :func:`add_rain`).
    """
    params = pick_component(params, rng)
    base_angle = uniform(rng, params.angle_range)
    low, high = params.layers_range
    count = int(rng.integers(low, high + 1))
    total = np.zeros((height, width), dtype=np.float32)
    for _ in range(count):
        density = uniform(rng, params.density_range)
        angle = base_angle + params.angle_jitter * (2.0 * float(rng.random()) - 1.0)
        length, streak_width = uniform(rng, params.length_range), uniform(rng, params.width_range)
        kernel = streak_kernel(length, angle, streak_width, params.taper)
        intensity = uniform(rng, params.intensity_range)
        # Seed a margin as wide as the kernel, so streaks enter from outside the frame instead of
        # stopping at the border (which zero or mirrored padding would produce).
        margin = kernel.shape[0] // 2
        draws = rng.random((height + 2 * margin, width + 2 * margin), dtype=np.float32)
        drops = np.where(draws < density, 1.0 - (1.0 - MIN_DROP_BRIGHTNESS) * draws / max(density, 1e-12), 0.0)
        total += convolve_valid(drops.astype(np.float32), kernel * np.float32(intensity / float(kernel.max())))
    if params.modulation > 0.0:
        total *= 1.0 - params.modulation * smooth_field(height, width, rng)
    return np.clip(total, 0.0, 1.0)


def composite(
    image: np.ndarray,
    streaks: np.ndarray,
    blend: Blend = "add",
    transmission: float | np.ndarray = 1.0,
    atmosphere: float = 1.0,
) -> np.ndarray:
    """``O = clip(alpha * blend(B, S) + (1 - alpha) * A, 0, 1)``, float32 of the image's shape.

    ``blend`` is ``B + S`` or ``1 - (1 - B)(1 - S)``; ``streaks`` and ``transmission`` are scalars
    or ``(H, W)`` maps shared by every channel. With ``alpha = 1`` this is plain streak rain; the
    clip comes last, where the sensor saturates.
    """
    if image.ndim == 3:
        streaks = streaks[..., None] if np.ndim(streaks) == 2 else streaks
        transmission = transmission[..., None] if np.ndim(transmission) == 2 else transmission
    rainy = image + streaks if blend == "add" else 1.0 - (1.0 - image) * (1.0 - streaks)
    if np.any(np.asarray(transmission) != 1.0):
        rainy = transmission * rainy + (1.0 - transmission) * np.float32(atmosphere)
    return np.clip(rainy, 0.0, 1.0).astype(np.float32, copy=False)


def add_rain(image: np.ndarray, rng: np.random.Generator, params: RainParams) -> np.ndarray:
    """Rainy copy of a float image in ``[0, 1]`` under ``params`` (see the module's models), float32, same shape."""
    image = check_image(image)
    params = pick_component(params, rng)
    height, width = image.shape[:2]
    streaks = rain_layer(height, width, rng, params)
    transmission: float | np.ndarray = 1.0
    atmosphere = 1.0
    if params.veiled:
        transmission = uniform(rng, params.transmission_range)
        atmosphere = uniform(rng, params.atmosphere_range)
        if params.transmission_variation > 0.0:
            field = smooth_field(height, width, rng)
            transmission = np.clip(transmission + params.transmission_variation * (2.0 * field - 1.0), 0.0, 1.0)
    return composite(image, streaks, params.blend, transmission, atmosphere)
