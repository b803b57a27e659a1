"""restorecli: image restoration (deraining, deblurring, denoising) with Restormer and NAFNet.

The public API is small on purpose: load a model once, then restore arrays or PIL images.
Names are imported lazily so that ``restore --help`` does not pay for importing PyTorch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from restorecli.api import load_model, restore_image
    from restorecli.engine.options import RunOptions, parse_memory_size
    from restorecli.zoo.descriptor import ModelDescriptor

try:
    __version__ = version("restorecli")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"

_LAZY = {
    "load_model": "restorecli.api",
    "restore_image": "restorecli.api",
    "RunOptions": "restorecli.engine.options",
    "parse_memory_size": "restorecli.engine.options",
    "ModelDescriptor": "restorecli.zoo.descriptor",
}
__all__ = ["ModelDescriptor", "RunOptions", "__version__", "load_model", "parse_memory_size", "restore_image"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'restorecli' has no attribute {name!r}")
