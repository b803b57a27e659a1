"""The Python API under the CLI: load a model once, restore arrays or PIL images with it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from restorecli.engine.device import resolve_device
from restorecli.engine.runner import DEFAULT_TILE_OVERLAP, move_to, restore_array
from restorecli.errors import ImageReadError
from restorecli.zoo.descriptor import ModelDescriptor
from restorecli.zoo.loader import load_descriptor

logger = logging.getLogger("restorecli")
ImageLike = TypeVar("ImageLike", np.ndarray, Image.Image)


def load_model(
    name_or_path: str | Path,
    device: str = "auto",
    *,
    weights: str | Path | None = None,
    arch_from: str | None = None,
    tlc: bool | None = None,
    progress: bool = True,
) -> ModelDescriptor:
    """Load a zoo model or a checkpoint onto a device, ready for :func:`restore_image`.

    Args:
        name_or_path: a zoo name (``restore models`` lists them) or a ``.pth``/``.pt``/``.safetensors``
            file, whose architecture comes from its model card, ``arch_from`` or its keys.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        weights: explicit weight file for a zoo name.
        arch_from: zoo entry whose architecture a bare checkpoint uses.
        tlc: force NAFNet's test-time local converter on or off (None: the entry's default).
        progress: show a progress bar if weights are downloaded.
    """
    descriptor = load_descriptor(
        name_or_path,
        weights=Path(weights) if weights is not None else None,
        arch_from=arch_from,
        tlc=tlc,
        progress=progress,
    )
    move_to(descriptor, resolve_device(device))
    return descriptor


def restore_image(
    model: ModelDescriptor,
    image: ImageLike,
    *,
    tile: int | None = None,
    tile_overlap: int = DEFAULT_TILE_OVERLAP,
    precision: str = "fp32",
) -> ImageLike:
    """Restore one image: a numpy array (``(H, W[, C])`` uint8/uint16) or a PIL image; same type out.

    PIL images are converted through numpy (8-bit modes L, RGB, RGBA); for 16-bit files read the
    pixels with :func:`restorecli.images.read_array` and pass the array.
    """
    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB", "RGBA"):
            raise ImageReadError(f"Expected a PIL image in mode L, RGB or RGBA, but got {image.mode}")
        restored = restore_array(model, np.asarray(image), tile=tile, tile_overlap=tile_overlap, precision=precision)
        return Image.fromarray(restored, mode=image.mode)
    return restore_array(model, image, tile=tile, tile_overlap=tile_overlap, precision=precision)
