"""Dataset tools: match files across folders, write reproducible split lists, cut images into patches."""

from __future__ import annotations

from restorecli.data.dataset import (
    KNOWN_LAYOUTS,
    DatasetIndex,
    index_dataset,
    parse_name_patterns,
    read_id_list,
    write_id_list,
)
from restorecli.data.patches import (
    Box,
    CropOptions,
    CropReport,
    crop_patches,
    patch_boxes,
    patch_name,
    patch_starts,
    plan_crop,
    read_manifest,
)
from restorecli.data.split import (
    SPLIT_NAMES,
    MaterializeResult,
    SplitRatios,
    SplitResult,
    assign_split,
    hash_fraction,
    materialize_split,
    split_dataset,
)

__all__ = [
    "KNOWN_LAYOUTS",
    "SPLIT_NAMES",
    "Box",
    "CropOptions",
    "CropReport",
    "DatasetIndex",
    "MaterializeResult",
    "SplitRatios",
    "SplitResult",
    "assign_split",
    "crop_patches",
    "hash_fraction",
    "index_dataset",
    "materialize_split",
    "parse_name_patterns",
    "patch_boxes",
    "patch_name",
    "patch_starts",
    "plan_crop",
    "read_id_list",
    "read_manifest",
    "split_dataset",
    "write_id_list",
]
