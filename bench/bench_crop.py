"""Throughput of ``restore crop-patches`` vs a BasicSR-style loop on 2K images (DIV2K size, 480/240 patches).

Issue 7 asks for ``restore crop-patches`` at least as fast as a BasicSR-style single-folder loop with the
same outputs. The baseline is the loop of BasicSR's ``scripts/data_preparation/extract_subimages.py`` in one
process: ``cv2.imread`` each image, slide a ``size`` window by ``step`` along each axis plus one last
window flush with the border when the remainder exceeds ``thresh_size`` (0), and ``cv2.imwrite`` every
patch as ``{stem}_s{index:03d}.png`` (index from 1, row-major) with PNG compression 3. restorecli names
patches ``{id}_s{index:03d}.png`` with ``id`` = the file stem, so names map one to one (BasicSR also strips
"x2"/"x3"/"x4"/"x8" from DIV2K LR names; generated names have none). After each restorecli run the script
checks the same patch names and identical pixels (byte-identical files count as identical) and exits with
status 1 otherwise.

Printed per run: images/s, patches/s, input MB/s (PNG bytes read), CPU s/image (this process plus its
finished workers: meaningful on a busy machine) and the ratio of images/s to the baseline's.

    python bench/bench_crop.py                                  # 8 images of 2040x1356, workers 1 and 2
    python bench/bench_crop.py --count 3 --width 600 --height 500 --workers 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from restorecli.data import CropOptions, crop_patches
from restorecli.images import list_images, read_array, write_array

MEGABYTE = 1e6
BASICSR_THRESH_SIZE = 0  # extract_subimages.py for DIV2K: opt['thresh_size'] = 0
BASICSR_PNG_COMPRESSION = 3  # opt['compression_level'] = 3 (OpenCV's default)


@dataclass(frozen=True)
class Row:
    """One timed run (the baseline or restorecli with a worker count)."""

    name: str
    workers: int
    seconds: float
    images_per_s: float
    patches_per_s: float
    input_mb_per_s: float
    cpu_s_per_image: float
    ratio: float  # images/s over the baseline's


@dataclass(frozen=True)
class Check:
    """restorecli's patches (one run) against the baseline's."""

    workers: int
    patches: int
    missing: list[str]  # baseline names restorecli did not write
    extra: list[str]  # restorecli names the baseline did not write
    identical_bytes: int
    identical_pixels: int  # including the byte-identical ones
    different: list[str]

    @property
    def same(self) -> bool:
        return not self.missing and not self.extra and not self.different and self.patches > 0


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


def window_starts(length: int, size: int, step: int, thresh_size: int) -> list[int]:
    """BasicSR's offsets along one axis, written independently of restorecli's ``patch_starts``."""
    starts = list(range(0, length - size + 1, step))
    if length - (starts[-1] + size) > thresh_size:
        starts.append(length - size)
    return starts


def basicsr_loop(source: Path, output: Path, size: int, step: int) -> int:
    """Cut every image of ``source`` into ``output`` as extract_subimages.py does, in one process."""
    output.mkdir(parents=True)
    written = 0
    for path in list_images(source):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        height, width = image.shape[:2]
        if min(height, width) < size:
            continue  # BasicSR would fail on it; restorecli's default policy skips it
        index = 0
        for top in window_starts(height, size, step, BASICSR_THRESH_SIZE):
            for left in window_starts(width, size, step, BASICSR_THRESH_SIZE):
                index += 1
                patch = np.ascontiguousarray(image[top : top + size, left : left + size, ...])
                name = output / f"{path.stem}_s{index:03d}.png"
                cv2.imwrite(str(name), patch, [cv2.IMWRITE_PNG_COMPRESSION, BASICSR_PNG_COMPRESSION])
                written += 1
    return written


def compare(baseline: Path, ours: Path, workers: int) -> Check:
    """Same names and identical pixels; decode only the files whose bytes differ."""
    theirs = {path.name for path in baseline.glob("*.png")}
    mine = {path.name for path in ours.glob("*.png")}  # patches.csv is restorecli's manifest, not a patch
    identical_bytes, identical_pixels, different = 0, 0, []
    for name in sorted(theirs & mine):
        if (baseline / name).read_bytes() == (ours / name).read_bytes():
            identical_bytes += 1
            identical_pixels += 1
        elif np.array_equal(read_array(baseline / name), read_array(ours / name)):
            identical_pixels += 1
        else:
            different.append(name)
    return Check(
        workers, len(mine), sorted(theirs - mine), sorted(mine - theirs), identical_bytes, identical_pixels, different
    )


def timed(function: Callable[[], int]) -> tuple[int, float, float]:
    """Patches written, wall seconds and CPU seconds of one run."""
    start, start_cpu = time.perf_counter(), cpu_seconds()
    patches = function()
    return patches, time.perf_counter() - start, cpu_seconds() - start_cpu


def restorecli_crop(source: Path, output: Path, options: CropOptions, workers: int) -> int:
    """``restore crop-patches`` through its library call; the patches written."""
    return crop_patches(source, output, options, workers=workers).written


@dataclass(frozen=True)
class Result:
    """The table and the checks, as printed and as written by ``--json``."""

    images: int
    input_mb: float
    size: int
    step: int
    cpu_count: int
    rows: list[Row]
    checks: list[Check]

    @property
    def same_outputs(self) -> bool:
        return bool(self.checks) and all(check.same for check in self.checks)

    def as_dict(self) -> dict[str, object]:
        result = asdict(self)
        result["checks"] = [{**asdict(check), "same": check.same} for check in self.checks]
        return {**result, "same_outputs": self.same_outputs}

    def print_table(self) -> None:
        print(
            f"{self.images} images, {self.input_mb:.1f} MB of PNG, size {self.size} step {self.step}, "
            f"{self.cpu_count} CPU cores"
        )
        titles = ("seconds", "images/s", "patches/s", "input MB/s", "CPU s/image", "ratio")
        print(f"  {'':22s} " + " ".join(f"{title:>11s}" for title in titles))
        for row in self.rows:
            cells = (row.seconds, row.images_per_s, row.patches_per_s, row.input_mb_per_s, row.cpu_s_per_image)
            print(f"  {row.name:22s} " + " ".join(f"{cell:11.2f}" for cell in cells) + f" {row.ratio:10.2f}x")
        for check in self.checks:
            verdict = "same patches" if check.same else "DIFFERENT PATCHES"
            print(
                f"  workers={check.workers}: {verdict} as the loop: {check.patches} patches, "
                f"{check.identical_pixels} identical pixels ({check.identical_bytes} identical files), "
                f"{len(check.missing)} missing, {len(check.extra)} extra, {len(check.different)} different"
            )


def run(source: Path, scratch: Path, size: int, step: int, workers: list[int]) -> Result:
    """Time the baseline, then restorecli per worker count, checking each output against the baseline's."""
    files = list_images(source)
    for path in files:
        read_array(path)  # warm the page cache (and the decoder's imports) for every run alike
    input_mb = sum(path.stat().st_size for path in files) / MEGABYTE
    baseline = scratch / "basicsr"
    options = CropOptions(size=size, step=step, thresh_size=BASICSR_THRESH_SIZE)
    runs = [("BasicSR-style loop", 1, partial(basicsr_loop, source, baseline, size, step))]
    runs += [
        (f"restorecli workers={n}", n, partial(restorecli_crop, source, scratch / f"ours-{n}", options, n))
        for n in workers
    ]
    rows: list[Row] = []
    checks: list[Check] = []
    for name, count, function in runs:
        patches, seconds, cpu = timed(function)
        images_per_s = len(files) / seconds
        ratio = images_per_s / rows[0].images_per_s if rows else 1.0
        rows.append(
            Row(name, count, seconds, images_per_s, patches / seconds, input_mb / seconds, cpu / len(files), ratio)
        )
        if len(rows) > 1:
            checks.append(compare(baseline, scratch / f"ours-{count}", count))
    return Result(len(files), input_mb, size, step, os.cpu_count() or 1, rows, checks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=8, help="generated images")
    parser.add_argument("--width", type=int, default=2040)
    parser.add_argument("--height", type=int, default=1356)
    parser.add_argument("--size", type=int, default=480, help="patch size")
    parser.add_argument("--step", type=int, default=240, help="patch step")
    parser.add_argument("--workers", default="1,2", help="comma-separated restorecli worker counts")
    parser.add_argument("--folder", type=Path, help="crop this folder of PNGs instead of generated images")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.folder is None and min(args.width, args.height) < args.size:
        parser.error("generated images must hold at least one patch in each direction")

    with tempfile.TemporaryDirectory(prefix="bench-crop-") as temp:
        source = args.folder or Path(temp) / "images"
        if args.folder is None:
            make_images(source, args.count, args.width, args.height)
        workers = [int(count) for count in args.workers.split(",")]
        result = run(source, Path(temp), args.size, args.step, workers)
    result.print_table()
    if args.json is not None:
        args.json.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    if not result.same_outputs:
        sys.exit(1)


if __name__ == "__main__":
    main()
