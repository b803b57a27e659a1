"""Bicubic downscaling, the super-resolution degradation: MATLAB's ``imresize(hr, 1/scale, 'bicubic')``.

The training pipeline calls it on float patches; ``restore degrade downscale`` and the validation
sets resize integer pixels with the same :func:`restorecli.data.resize.imresize` (MATLAB rounds
between its passes there), so a network trains on the low-resolution images it is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from restorecli.data.degradations.ranges import check_image
from restorecli.data.resize import imresize
from restorecli.errors import ConfigError

# The factors the shipped super-resolution networks (SAFMN, CAMixerSR) are released for.
SCALES: tuple[int, ...] = (2, 3, 4)


@dataclass(frozen=True)
class DownscaleParams:
    """Bicubic downscaling settings.

    Attributes:
        scale: integer factor (2, 3 or 4), the upscaling factor of the network to train; each side
            becomes ``ceil(side / scale)``, so sides that are multiples of ``scale`` stay aligned.
    """

    scale: int = 4

    def __post_init__(self) -> None:
        if type(self.scale) is not int or self.scale not in SCALES:
            raise ConfigError(f"Expected a downscaling scale among {list(SCALES)}, but got {self.scale!r}")


def bicubic_downscale(image: np.ndarray, params: DownscaleParams) -> np.ndarray:
    """Shrink a float ``(H, W[, C])`` image in ``[0, 1]`` by ``params.scale``, clipped to ``[0, 1]``.

    Clipping removes the cubic kernel's overshoot at edges, as saving the result to a file would.
    """
    return np.clip(imresize(check_image(image), 1 / params.scale), 0.0, 1.0).astype(np.float32, copy=False)
