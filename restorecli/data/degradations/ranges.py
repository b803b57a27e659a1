"""Validation shared by the parameter dataclasses, and the checks every degradation applies to its input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from restorecli.errors import ConfigError


def as_range(name: str, value: Sequence[float], minimum: float, maximum: float = float("inf")) -> tuple[float, float]:
    """Validate a ``(low, high)`` pair within ``[minimum, maximum]``; lists from TOML recipes become tuples."""
    pair = tuple(float(v) for v in value)
    if len(pair) != 2 or not pair[0] <= pair[1]:
        raise ConfigError(f"Expected {name} as (low, high) with low <= high, but got {tuple(value)!r}")
    if pair[0] < minimum or pair[1] > maximum:
        raise ConfigError(f"Expected {name} within [{minimum:g}, {maximum:g}], but got {pair!r}")
    return pair  # type: ignore[return-value]


def as_probability(name: str, value: float) -> float:
    """Validate a probability in ``[0, 1]``."""
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"Expected {name} in [0, 1], but got {value!r}")
    return float(value)


def uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """One draw from ``[low, high]``; always consumes one number so the stream does not depend on the bounds."""
    return bounds[0] + (bounds[1] - bounds[0]) * float(rng.random())


def check_image(image: np.ndarray) -> np.ndarray:
    """Accept ``(H, W)`` or ``(H, W, C)`` floating pixels in ``[0, 1]``; return them float32 and C-contiguous.

    Contiguity matters because OpenCV rejects strided views (flipped or rotated crops).
    """
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or not np.issubdtype(image.dtype, np.floating):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ConfigError(f"Expected a float (H, W) or (H, W, C) image in [0, 1], but got {dtype} with shape {shape}")
    return np.ascontiguousarray(image, dtype=np.float32)
