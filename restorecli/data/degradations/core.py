"""One entry point for every degradation, shared by ``restore degrade`` and the training data pipeline."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any, Literal, overload

import numpy as np

from restorecli.data.degradations.blur import BlurParams, motion_blur
from restorecli.data.degradations.downscale import DownscaleParams, bicubic_downscale
from restorecli.data.degradations.noise import NoiseParams, add_gaussian_noise
from restorecli.data.degradations.rain import RainParams, add_rain
from restorecli.data.degradations.ranges import check_image
from restorecli.errors import ConfigError

DegradationKind = Literal["noise", "blur", "rain", "downscale"]
DegradationParams = NoiseParams | BlurParams | RainParams | DownscaleParams
PARAMS_BY_KIND: dict[str, type[DegradationParams]] = {
    "noise": NoiseParams,
    "blur": BlurParams,
    "rain": RainParams,
    "downscale": DownscaleParams,
}
KINDS: tuple[str, ...] = tuple(PARAMS_BY_KIND)


def size_factor(params: DegradationParams) -> int:
    """How many times smaller per side the degraded image is than the clean one (1 but for downscaling)."""
    return params.scale if isinstance(params, DownscaleParams) else 1


def _params_class(kind: str) -> type[DegradationParams]:
    if kind not in PARAMS_BY_KIND:
        raise ConfigError(f"Expected a degradation among {', '.join(KINDS)}, but got {kind!r}")
    return PARAMS_BY_KIND[kind]


def make_params(kind: str, settings: Mapping[str, Any] | None = None) -> DegradationParams:
    """Build the parameter dataclass of ``kind`` from a recipe mapping (lists become tuples).

    For rain, a ``preset`` key picks :data:`RAIN_PRESETS` and the other keys override it.
    Unknown keys raise ConfigError with the closest valid name.
    """
    params_class = _params_class(kind)
    settings = dict(settings or {})
    preset = settings.pop("preset", None) if kind == "rain" else None
    known = [f.name for f in fields(params_class)]
    for key in settings:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"Expected {kind} settings among {', '.join(known)}, but got {key!r}{hint}")
    if preset is not None:
        return RainParams.preset(str(preset), **settings)
    return params_class(**settings)


@overload
def degrade(
    kind: DegradationKind,
    image: np.ndarray,
    rng: np.random.Generator,
    params: DegradationParams | None = None,
    *,
    return_kernel: Literal[False] = False,
) -> np.ndarray: ...


@overload
def degrade(
    kind: DegradationKind,
    image: np.ndarray,
    rng: np.random.Generator,
    params: DegradationParams | None = None,
    *,
    return_kernel: Literal[True],
) -> tuple[np.ndarray, np.ndarray | None]: ...


def degrade(
    kind: DegradationKind,
    image: np.ndarray,
    rng: np.random.Generator,
    params: DegradationParams | None = None,
    *,
    return_kernel: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray | None]:
    """Degrade one float image: every random choice comes from ``rng``, so a seed fixes the result.

    Args:
        kind: ``noise``, ``blur``, ``rain`` or ``downscale`` (bicubic, for super-resolution).
        image: ``(H, W)`` or ``(H, W, C)`` float pixels in ``[0, 1]`` (float32 preferred; not modified).
        rng: a ``numpy.random.Generator``, e.g. :func:`image_rng` or ``np.random.default_rng(seed)``
            (downscaling draws nothing from it).
        params: the kind's dataclass; ``None`` uses its defaults.
        return_kernel: also return the blur kernel (``None`` for the other kinds).

    Returns:
        float32 array of the image's shape (in ``[0, 1]`` except for unclipped noise; ``ceil(side /
        scale)`` per side for downscaling, see :func:`size_factor`), or ``(degraded, kernel)`` when
        ``return_kernel`` is true.
    """
    params_class = _params_class(kind)
    if params is None:
        params = params_class()
    elif not isinstance(params, params_class):
        raise ConfigError(f"Expected {params_class.__name__} for {kind}, but got {type(params).__name__}")
    image = check_image(image)
    kernel: np.ndarray | None = None
    if isinstance(params, NoiseParams):
        degraded = add_gaussian_noise(image, rng, params)
    elif isinstance(params, BlurParams):
        degraded, kernel = motion_blur(image, rng, params)
    elif isinstance(params, DownscaleParams):
        degraded = bicubic_downscale(image, params)
    else:
        degraded = add_rain(image, rng, params)
    return (degraded, kernel) if return_kernel else degraded
