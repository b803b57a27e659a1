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
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from restorecli import load_model, restore_image
from restorecli.data.degradations import degrade_files, make_params
from restorecli.images import list_images, read_array
from restorecli.metrics.psnr_ssim import psnr
from restorecli.zoo.card import record_benchmarks

REPOSITORY = Path(__file__).resolve().parents[1]
KODAK = REPOSITORY.parent / "shared" / "data" / "val" / "Kodak24"
PROTOCOL = "bench/bench_derain_presets.py: restore degrade rain --preset P --seed S (8-bit PNG); restore eval --protocol restormer-derain (rounded Y)"
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
    model = load_model(model_name, device="cpu")
    files = list_images(folder)[:limit]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-derain-") as scratch:
        for label, settings, seed in CASES:
            rainy_folder = Path(scratch) / label.replace(" ", "-")
            rainy_folder.mkdir()
            for path in files:  # the same files the limit kept, one at a time (as the CLI writes them)
                degrade_files(
                    "rain", path, rainy_folder / path.name, make_params("rain", settings), seed, progress=False
                )
            inputs, outputs = [], []
            started = time.perf_counter()
            for path in files:
                clean = read_array(path)
                rainy = read_array(rainy_folder / path.name)
                inputs.append(y_psnr(rainy, clean))
                outputs.append(y_psnr(restore_image(model, rainy), clean))
            rows.append(
                {
                    "case": f"{label} seed {seed}",
                    "preset": label,
                    "seed": seed,
                    "images": len(files),
                    "input_psnr": float(np.mean(inputs)),
                    "psnr": float(np.mean(outputs)),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="restorecli-derain", help="zoo name or weights file")
    parser.add_argument("--clean", type=Path, default=KODAK, help="clean images (default: shared Kodak24)")
    parser.add_argument("--limit", type=int, help="only the first N images (quick checks)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--card", type=Path, help="also record the rows as the benchmark table of this model card")
    args = parser.parse_args(argv)
    rows = measure(args.model, args.clean, args.limit)
    print(f"{args.model} on {args.clean} ({rows[0]['images']} images), Y-PSNR dB (input -> restored)")
    for row in rows:
        print(
            f"  {row['preset']:17s} seed {row['seed']:4d}: {row['input_psnr']:6.2f} -> {row['psnr']:6.2f}  ({row['seconds']} s)"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    if args.card:
        record_benchmarks(args.card, rows, os.path.relpath(args.clean, REPOSITORY), PROTOCOL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
