"""The Python API under the CLI: load a model once, restore arrays or PIL images with it.

How a model runs is one :class:`RunOptions` record (the CLI builds the same one)::

    model = load_model("restorecli-denoise")                 # device="auto"
    clean = restore_image(model, noisy)                      # whole image when it fits
    clean = restore_image(model, noisy, tile=512, precision="bf16")   # shortcuts for common fields
    options = RunOptions(tile=512, overlap=64, max_memory=parse_memory_size("4GiB"))
    clean = restore_image(model, noisy, options=options)     # every field; reuse it across calls
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image

from restorecli.engine.device import Precision, may_fall_back, resolve_device
from restorecli.engine.options import RunOptions, parse_memory_size
from restorecli.engine.runner import restore_array
from restorecli.errors import DeviceError, ImageReadError
from restorecli.zoo.descriptor import ModelDescriptor
from restorecli.zoo.loader import load_descriptor

__all__ = ["RunOptions", "load_model", "parse_memory_size", "restore_image"]

logger = logging.getLogger("restorecli")
ImageLike = TypeVar("ImageLike", np.ndarray, Image.Image)


def load_model(
    name_or_path: str | Path,
    device: str | torch.device = "auto",
    *,
    weights: str | Path | None = None,
    arch_from: str | None = None,
    variant: str | None = None,
    progress: bool = True,
) -> ModelDescriptor:
    """Load a zoo model or a checkpoint onto a device, ready for :func:`restore_image`.

    Args:
        name_or_path: a zoo name (``restore models`` lists them) or a ``.pth``/``.pt``/``.safetensors``
            file, whose architecture comes from its model card, ``arch_from`` or its keys.
        device: ``auto`` (CUDA, then MPS, then CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (or a
            ``torch.device`` of those). Only a
            model placed by ``auto`` falls back to the next device when its own fails (announced);
            a named device fails with a DeviceError instead (``RunOptions.fallback`` overrides).
        weights: explicit weight file for a zoo name.
        arch_from: zoo entry whose architecture a bare checkpoint uses.
        variant: an architecture variant for the weights (NAFNet: ``tlc``, its test-time local
            converter, or ``plain``; None: the entry's choice).
        progress: show a progress bar if weights are downloaded.
    """
    if not isinstance(device, (str, torch.device)):
        raise DeviceError(f"Expected a device name or a torch.device, but got {device!r}")
    device = str(device)
    descriptor = load_descriptor(
        name_or_path,
        weights=Path(weights) if weights is not None else None,
        arch_from=arch_from,
        variant=variant,
        progress=progress,
    )
    descriptor.module.to(resolve_device(device))
    descriptor.auto_device = may_fall_back(device)
    return descriptor


def restore_image(
    model: ModelDescriptor,
    image: ImageLike,
    *,
    options: RunOptions | None = None,
    tile: int | None = None,
    precision: Precision | None = None,
    tile_batch: int | None = None,
) -> ImageLike:
    """Restore one image: a numpy array (``(H, W[, C])`` uint8/uint16) or a PIL image; same type out.

    Args:
        model: from :func:`load_model`.
        image: PIL images are converted through numpy (8-bit modes L, RGB, RGBA); for 16-bit files
            read the pixels with :func:`restorecli.images.read_array` and pass the array.
        options: how to run (default ``RunOptions()``: whole images when they fit, fp32).
        tile, precision, tile_batch: shortcuts that override those fields of ``options``.

    Raises:
        ConfigError: invalid options; ImageReadError: pixels the model cannot take; DeviceError: the
            model fails on its device and may not fall back.
    """
    shortcuts: dict[str, Any] = {"tile": tile, "precision": precision, "tile_batch": tile_batch}
    chosen = replace(options or RunOptions(), **{k: v for k, v in shortcuts.items() if v is not None})
    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB", "RGBA"):
            raise ImageReadError(f"Expected a PIL image in mode L, RGB or RGBA, but got {image.mode}")
        restored = restore_array(model, np.asarray(image), chosen)
        return Image.fromarray(restored, mode=image.mode)
    return restore_array(model, image, chosen)
