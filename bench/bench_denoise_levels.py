"""Denoising at several noise levels, colour and grey, as the papers test it: the model card's table.

Protocol (DnCNN/FFDNet/Restormer test scripts as the issue states them): per image,
``np.random.seed(0)`` then float Gaussian noise of sigma/255 added to the [0, 1] image, rounded and
clipped to 8 bits (the noisy PNG a user has); PSNR on RGB (or the grey plane), no border crop.
Grey images are the colour ones converted as Pillow's ``L`` (BT.601 luma).

    python bench/bench_denoise_levels.py                      # restorecli-denoise on Kodak24
    python bench/bench_denoise_levels.py --model weights.safetensors --sigmas 15,25,50 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from restorecli import load_model, restore_image
from restorecli.data.degradations import benchmark_gaussian_noise
from restorecli.images import list_images, read_array
from restorecli.metrics.psnr_ssim import psnr
from restorecli.zoo.card import record_benchmarks

REPOSITORY = Path(__file__).resolve().parents[1]
KODAK = REPOSITORY.parent / "shared" / "data" / "val" / "Kodak24"
PROTOCOL = "bench/bench_denoise_levels.py: Gaussian noise with np.random.seed(0) per image, rounded and clipped to 8 bits; PSNR on RGB (grey: the Pillow L plane)"


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """BT.601 luma, rounded, as Pillow's ``convert("L")``."""
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).convert("L"))


def noisy_8bit(clean: np.ndarray, sigma: float) -> np.ndarray:
    """The papers' noisy input, saved as an 8-bit image: seed 0 per image, rounded, clipped."""
    noisy = benchmark_gaussian_noise(clean, sigma, seed=0)
    return np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)


def measure(model_name: str, folder: Path, sigmas: list[float], limit: int | None) -> list[dict[str, object]]:
    model = load_model(model_name, device="cpu")
    files = list_images(folder)[:limit]
    rows = []
    for mode in ("colour", "grey"):
        for sigma in sigmas:
            gains, outputs, inputs = [], [], []
            started = time.perf_counter()
            for path in files:
                clean = read_array(path)
                clean = to_grey(clean) if mode == "grey" else clean
                noisy = noisy_8bit(clean, sigma)
                restored = restore_image(model, noisy)
                inputs.append(psnr(noisy, clean, data_range=255))
                outputs.append(psnr(restored, clean, data_range=255))
                gains.append(outputs[-1] - inputs[-1])
            rows.append(
                {
                    "case": f"{mode} sigma {sigma:g}",
                    "mode": mode,
                    "sigma": sigma,
                    "images": len(files),
                    "input_psnr": float(np.mean(inputs)),
                    "psnr": float(np.mean(outputs)),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="restorecli-denoise", help="zoo name or weights file")
    parser.add_argument("--clean", type=Path, default=KODAK, help="clean images (default: shared Kodak24)")
    parser.add_argument("--sigmas", default="15,25,50")
    parser.add_argument("--limit", type=int, help="only the first N images (quick checks)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--card", type=Path, help="also record the rows as the benchmark table of this model card")
    args = parser.parse_args(argv)
    rows = measure(args.model, args.clean, [float(s) for s in args.sigmas.split(",")], args.limit)
    print(f"{args.model} on {args.clean} ({rows[0]['images']} images), PSNR dB (input -> restored)")
    for row in rows:
        print(
            f"  {row['mode']:6s} sigma {row['sigma']:4.0f}: {row['input_psnr']:6.2f} -> {row['psnr']:6.2f}  ({row['seconds']} s)"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    if args.card:
        record_benchmarks(args.card, rows, os.path.relpath(args.clean, REPOSITORY), PROTOCOL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
