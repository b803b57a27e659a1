"""Contact sheets of the rain presets, and the input Y-PSNR each preset gives on Kodak24.

Run from the repository root: ``python examples/rain-presets/make_sheets.py [--kodak DIR] [--out DIR]``.
Each sheet tiles, for a few Kodak24 images, a centre crop of the image as ``restore degrade rain
--preset NAME --seed SEED`` writes it (same per-file random stream), so the sheets show what
training draws. The printed Y-PSNR (rainy input vs clean, all 24 whole images) places each preset
against the published inputs of the benchmark sets (e.g. Rain100H about 13.6 dB, Rain100L about 26.9 dB).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from restorecli.images import read_array
from restorecli.metrics.psnr_ssim import psnr
from restorecli.data.degradations import RainParams, degrade_pixels
from restorecli.data.degradations.files import to_pixels

SHEET_IMAGES = ("kodim14.png", "kodim21.png", "kodim23.png")
CROP = 288  # pixels of each tile: streaks are judged at full resolution, not downscaled


def centre_crop(pixels: np.ndarray, size: int) -> np.ndarray:
    top, left = (pixels.shape[0] - size) // 2, (pixels.shape[1] - size) // 2
    return pixels[top : top + size, left : left + size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kodak", type=Path, default=Path("../shared/data/val/Kodak24"))
    parser.add_argument("--out", type=Path, default=Path("examples/rain-presets"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--presets", nargs="*", default=["rain100l", "rain100h", "photoshop", "heavy"])
    parser.add_argument("--quality", type=int, default=75, help="JPEG quality of the sheets.")
    args = parser.parse_args()
    files = sorted(args.kodak.glob("*.png"))
    for name in args.presets:
        params = RainParams.preset(name)
        scores, tiles = [], []
        for path in files:
            pixels = read_array(path)
            rainy = to_pixels(degrade_pixels("rain", pixels, params, args.seed, path.name)[0], pixels.dtype)
            scores.append(psnr(rainy, pixels, data_range=255, y_channel=True))
            if path.name in SHEET_IMAGES:
                tiles.append(centre_crop(rainy, CROP))
        args.out.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate(tiles, axis=1)).save(args.out / f"{name}.jpg", quality=args.quality)
        spread = f"(min {min(scores):.2f}, max {max(scores):.2f})"
        print(f"{name:<10} Kodak24 input Y-PSNR {np.mean(scores):6.2f} dB {spread}")


if __name__ == "__main__":
    main()
