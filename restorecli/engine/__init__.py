"""The inference engine: device choice and fallback, padding, tiling, the runner and batch processing.

Everything here reads a model's constraints from its :class:`~restorecli.zoo.descriptor.ModelDescriptor`.
"""

from __future__ import annotations

from restorecli.engine.batch import BatchReport, output_paths, restore_files
from restorecli.engine.device import (
    PRECISIONS,
    Precision,
    fallback_chain,
    is_out_of_memory,
    is_unsupported_operator,
    precision_dtype,
    resolve_device,
    supported_precisions,
)
from restorecli.engine.padding import crop, pad_to_multiple
from restorecli.engine.runner import (
    DEFAULT_TILE_OVERLAP,
    check_options,
    estimate_bytes_per_pixel,
    move_to,
    restore_array,
    restore_tensor,
)
from restorecli.engine.tiling import Tile, merge_tiles, plan_tiles, tile_weights

__all__ = [
    "DEFAULT_TILE_OVERLAP",
    "PRECISIONS",
    "BatchReport",
    "Precision",
    "Tile",
    "check_options",
    "crop",
    "estimate_bytes_per_pixel",
    "fallback_chain",
    "is_out_of_memory",
    "is_unsupported_operator",
    "merge_tiles",
    "move_to",
    "output_paths",
    "pad_to_multiple",
    "plan_tiles",
    "precision_dtype",
    "resolve_device",
    "restore_array",
    "restore_files",
    "restore_tensor",
    "supported_precisions",
    "tile_weights",
]
