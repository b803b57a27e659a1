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
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

# bench/ is this script's folder, first on sys.path when it runs.
from card_table import add_table_arguments, report, restorer, score_case

from restorecli import load_model
from restorecli.data.degradations import benchmark_gaussian_noise
from restorecli.images import list_images, read_array
from restorecli.metrics.psnr_ssim import psnr

PROTOCOL = (
    "bench/bench_denoise_levels.py: Gaussian noise with np.random.seed(0) per image, rounded and clipped "
    "to 8 bits; PSNR on RGB (grey: the Pillow L plane)"
)


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """BT.601 luma, rounded, as Pillow's ``convert("L")``."""
    from PIL import Image

    return np.asarray(Image.fromarray(pixels).convert("L"))


def noisy_8bit(clean: np.ndarray, sigma: float) -> np.ndarray:
    """The papers' noisy input, saved as an 8-bit image: seed 0 per image, rounded, clipped."""
    noisy = benchmark_gaussian_noise(clean, sigma, seed=0)
    return np.clip(np.round(noisy * 255.0), 0, 255).astype(np.uint8)


def noisy_pairs(files: list[Path], mode: str, sigma: float) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(clean, noisy)`` of each file: colour, or grey as Pillow's ``L``; noisy as :func:`noisy_8bit`."""
    for path in files:
        clean = read_array(path)
        clean = to_grey(clean) if mode == "grey" else clean
        yield clean, noisy_8bit(clean, sigma)


def rgb_psnr(image: np.ndarray, clean: np.ndarray) -> float:
    """PSNR on every channel at 8-bit range, no border crop (the papers' denoising score)."""
    return psnr(image, clean, data_range=255)


def measure(model_name: str, folder: Path, sigmas: list[float], limit: int | None) -> list[dict[str, object]]:
    restore = restorer(load_model(model_name, device="cpu"))
    files = list_images(folder)[:limit]
    return [
        score_case(
            restore, noisy_pairs(files, mode, sigma), rgb_psnr, f"{mode} sigma {sigma:g}", mode=mode, sigma=sigma
        )
        for mode in ("colour", "grey")
        for sigma in sigmas
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_table_arguments(parser, "restorecli-denoise")
    parser.add_argument("--sigmas", default="15,25,50")
    args = parser.parse_args(argv)
    rows = measure(args.model, args.clean, [float(s) for s in args.sigmas.split(",")], args.limit)
    report(args, rows, "PSNR", PROTOCOL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
