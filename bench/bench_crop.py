"""Throughput of ``restore crop-patches`` on a folder of 2K images (DIV2K size 2040x1356, 480/240 patches).

Usage: ``python bench/bench_crop.py [--count 8] [--width 2040 --height 1356] [--workers 1,2] [--folder DIR]``.
Prints images/s, input MB/s (PNG bytes read), decoded MB/s (pixels cut), patches/s and CPU seconds per
image (this process plus its finished workers: a figure that stays meaningful on a busy shared machine).
Generated images are smooth gradients plus noise, so PNG sizes resemble photographs rather than
incompressible noise.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from restorecli.data import CropOptions, crop_patches
from restorecli.images import list_images, write_array

MEGABYTE = 1e6


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its terminated, reaped children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def make_images(folder: Path, count: int, width: int, height: int, seed: int = 0) -> None:
    """Write ``count`` RGB PNGs of a photo-like mix: colour gradients, soft blobs, mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for index in range(count):
        phase = rng.uniform(0, 2 * np.pi, size=3)
        channels = [
            127 + 100 * np.sin(xx / (90 + 30 * c) + phase[c]) * np.cos(yy / (70 + 20 * c) - phase[c]) for c in range(3)
        ]
        image = np.stack(channels, axis=2) + rng.normal(0, 6, size=(height, width, 3))
        write_array(folder / f"{index + 1:04d}.png", np.clip(image, 0, 255).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8, help="generated images")
    parser.add_argument("--width", type=int, default=2040)
    parser.add_argument("--height", type=int, default=1356)
    parser.add_argument("--size", type=int, default=480, help="patch size")
    parser.add_argument("--step", type=int, default=240, help="patch step")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--folder", type=Path, help="crop this folder instead of generated images")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-crop-") as temp:
        source = args.folder or Path(temp) / "images"
        if args.folder is None:
            make_images(source, args.count, args.width, args.height)
        files = list_images(source)
        input_mb = sum(p.stat().st_size for p in files) / MEGABYTE
        print(f"{len(files)} images, {input_mb:.1f} MB of PNG, size {args.size} step {args.step}")
        header = ("workers", "seconds", "images/s", "input MB/s", "decoded MB/s", "patches/s", "CPU s/image")
        print("  ".join(f"{title:>12}" for title in header))
        for workers in (int(w) for w in args.workers.split(",")):
            output = Path(temp) / f"out-{workers}"
            start, cpu_start = time.perf_counter(), cpu_seconds()
            report = crop_patches(source, output, CropOptions(size=args.size, step=args.step), workers=workers)
            seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
            row = (
                f"{workers}",
                f"{seconds:.2f}",
                f"{report.images / seconds:.2f}",
                f"{input_mb / seconds:.1f}",
                f"{report.pixels_bytes / MEGABYTE / seconds:.1f}",
                f"{report.written / seconds:.1f}",
                f"{cpu / report.images:.2f}",
            )
            print("  ".join(f"{cell:>12}" for cell in row))


if __name__ == "__main__":
    main()
