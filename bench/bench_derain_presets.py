"""Deraining on every benchmark rain model, as the derain card reports it: Kodak24, one row per preset.

Protocol: each preset's rainy copy of the clean images exactly as ``restore degrade rain --preset P
--seed 1717`` writes it (8-bit PNG; seed 1717 is never drawn in training: see
``recipes/derain-stage2.toml``), restored by the model, scored as Restormer's deraining evaluation
does (``restore eval --protocol restormer-derain``: MATLAB's rounded BT.601 luma, PSNR at 255).
The last row is the 0.1 release's thin synthetic streaks (default preset, ``--seed 0``).

    python bench/bench_derain_presets.py                        # restorecli-derain on Kodak24
    python bench/bench_derain_presets.py --model runs/derain-stage3/restorecli-derain.safetensors --json out.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

# bench/ is this script's folder, first on sys.path when it runs.
from card_table import add_table_arguments, report, restorer, score_case

from restorecli import load_model
from restorecli.data.degradations import degrade_files, make_params
from restorecli.images import list_images, read_array
from restorecli.metrics.psnr_ssim import psnr

PROTOCOL = (
    "bench/bench_derain_presets.py: restore degrade rain --preset P --seed S (8-bit PNG); "
    "restore eval --protocol restormer-derain (rounded Y)"
)
# (row label, rain settings, seed): the card's rows.
CASES = (
    ("rain100l", {"preset": "rain100l"}, 1717),
    ("rain100h", {"preset": "rain100h"}, 1717),
    ("photoshop", {"preset": "photoshop"}, 1717),
    ("heavy", {"preset": "heavy"}, 1717),
    ("0.1 thin streaks", {}, 0),
)


def y_psnr(restored: np.ndarray, clean: np.ndarray) -> float:
    """The ``restormer-derain`` protocol's PSNR: rounded luma, 8-bit range."""
    return psnr(restored, clean, data_range=255, y_channel=True, round_y=True)


def measure(model_name: str, folder: Path, limit: int | None) -> list[dict[str, object]]:
    restore = restorer(load_model(model_name, device="cpu"))
    files = list_images(folder)[:limit]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-derain-") as scratch:
        for label, settings, seed in CASES:
            rainy_folder = Path(scratch) / label.replace(" ", "-")
            rainy_folder.mkdir()
            for path in files:  # the files the limit kept, one at a time (each as the CLI writes it)
                degrade_files(
                    "rain", path, rainy_folder / path.name, make_params("rain", settings), seed, progress=False
                )
            pairs = ((read_array(path), read_array(rainy_folder / path.name)) for path in files)
            rows.append(score_case(restore, pairs, y_psnr, f"{label} seed {seed}", preset=label, seed=seed))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_table_arguments(parser, "restorecli-derain")
    args = parser.parse_args(argv)
    report(args, measure(args.model, args.clean, args.limit), "Y-PSNR", PROTOCOL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
