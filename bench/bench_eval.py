"""Pairs per second for PSNR+SSIM on generated 1-megapixel pairs: restorecli's evaluator vs scikit-image.

Both sides read the same PNG files with the same decoder (``restorecli.images.read_array``), so the
difference is the metric code and the parallelism. The scikit-image loop is configured to compute the
same SSIM (Gaussian 11x11, sigma 1.5, population covariance), and the script checks that the means agree.

    python bench/bench_eval.py                  # 8 pairs of 1000x1000 RGB, workers 1 and 2
    python bench/bench_eval.py --pairs 4 --size 256 --workers 1
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from restorecli.images import list_images, read_array, write_array
from restorecli.metrics import EvalSettings, evaluate_paths


def generate_pairs(root: Path, count: int, size: int) -> tuple[Path, Path]:
    """Photo-like clean images (smooth gradients and texture) and noisy predictions, as PNG."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:size, 0:size] / size
    for index in range(count):
        phase = rng.uniform(0, 2 * np.pi, 3)
        channels = [
            0.5
            + 0.3 * np.sin(2 * np.pi * (3 + index) * rows + phase[c]) * np.cos(2 * np.pi * 5 * cols + phase[c])
            + 0.2 * cols
            for c in range(3)
        ]
        clean = np.clip(np.stack(channels, axis=2) * 255 + rng.normal(0, 4, (size, size, 3)), 0, 255)
        noisy = np.clip(clean + rng.normal(0, 15, clean.shape), 0, 255)
        write_array(root / "gt" / f"{index:04d}.png", clean.round().astype(np.uint8), png_compression=1)
        write_array(root / "pred" / f"{index:04d}.png", noisy.round().astype(np.uint8), png_compression=1)
    return root / "pred", root / "gt"


def skimage_loop(pred_dir: Path, gt_dir: Path) -> tuple[float, float]:
    """The plain loop a user would write: read, skimage PSNR, skimage SSIM (Wang et al. settings)."""
    psnrs, ssims = [], []
    for path in list_images(pred_dir):
        pred, gt = read_array(path), read_array(gt_dir / path.name)
        psnrs.append(peak_signal_noise_ratio(gt, pred, data_range=255))
        ssims.append(
            structural_similarity(
                gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
            )
        )
    return float(np.mean(psnrs)), float(np.mean(ssims))


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(function, *args, **kwargs):  # type: ignore[no-untyped-def]
    """Result, wall seconds and CPU seconds: CPU time per pair stays meaningful on a busy machine."""
    start, start_cpu = time.perf_counter(), _cpu_seconds()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start, _cpu_seconds() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8, help="number of image pairs")
    parser.add_argument("--size", type=int, default=1000, help="side in pixels (1000 = 1 megapixel)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="evaluator worker counts to time")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        pred_dir, gt_dir = generate_pairs(Path(folder), args.pairs, args.size)
        for path in list_images(pred_dir) + list_images(gt_dir):
            read_array(path)  # warm the page cache for both sides
        print(f"{args.pairs} pairs of {args.size}x{args.size} RGB uint8 PNG, PSNR + SSIM, reading included")
        (sk_psnr, sk_ssim), seconds, cpu = timed(skimage_loop, pred_dir, gt_dir)
        row = "  {:<24s} {:7.2f} pairs/s  ({:.2f} s wall, {:.3f} CPU s/pair)"
        print(row.format("scikit-image loop", args.pairs / seconds, seconds, cpu / args.pairs))
        settings = EvalSettings(metrics=("psnr", "ssim"))
        for workers in args.workers:
            report, seconds, cpu = timed(evaluate_paths, pred_dir, gt_dir, settings, workers=workers)
            print(row.format(f"restorecli workers={workers}", args.pairs / seconds, seconds, cpu / args.pairs))
            gap_psnr = abs(report.summary["psnr"] - sk_psnr)
            gap_ssim = abs(report.summary["ssim"] - sk_ssim)
            print(
                f"    mean PSNR {report.summary['psnr']:.4f} dB (|diff| {gap_psnr:.1e}), "
                f"mean SSIM {report.summary['ssim']:.6f} (|diff| {gap_ssim:.1e})"
            )


if __name__ == "__main__":
    main()
