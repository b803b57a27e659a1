"""Pairs per second for PSNR+SSIM on generated 1-megapixel pairs: ``restore eval`` vs a scikit-image loop.

Issue 7 asks for ``restore eval`` at least 2x a plain per-image scikit-image loop on 100 one-megapixel
pairs. The loop reads each pair with the same decoder as restorecli (``restorecli.images.read_array``) and
computes PSNR and the same SSIM (Gaussian 11x11, sigma 1.5, population covariance) in one process, so the
difference is the metric code and the parallelism. Rows:

- ``restore eval (CLI)``: the real command with its default settings (``--workers 0``: one process per
  core), run as a subprocess; its time includes starting Python and importing the CLI (~2-3 s for torch).
- ``evaluate_paths workers=N``: the library call with explicit worker counts (imports done beforehand, as for
  the loop; the pool's spawned workers are counted).

Every row's mean PSNR and SSIM must agree with the loop's (within ``MEANS_TOLERANCE``); the script exits
with status 1 otherwise. CPU s/pair counts this process and its finished children (the CLI and the pool
workers): a figure that stays meaningful when other jobs share the machine.

    python bench/bench_eval.py                                # 100 pairs of 1000x1000 RGB (~3 min)
    python bench/bench_eval.py --pairs 8 --workers 1 2        # short mode on 1 MP images
    python bench/bench_eval.py --pairs 2 --size 64 --workers 1 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from restorecli.images import list_images, read_array, write_array
from restorecli.metrics import EvalSettings, evaluate_paths

# The two SSIM implementations filter in float64 in different orders (scipy vs OpenCV): ~1e-14 apart.
MEANS_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Row:
    """One timed run: throughput, cost, and its means next to the scikit-image loop's."""

    name: str
    workers: int | None  # None: the command's default
    seconds: float
    pairs_per_s: float
    cpu_s_per_pair: float
    speedup: float  # pairs/s over the scikit-image loop's pairs/s
    psnr: float
    ssim: float
    psnr_diff: float
    ssim_diff: float


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


def skimage_scores(pred_path: Path, gt_path: Path) -> tuple[float, float]:
    """What a user would write per pair: read, skimage PSNR, skimage SSIM (Wang et al. settings)."""
    # Imported here, not at the top: the evaluator's spawned workers re-import this script.
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    pred, gt = read_array(pred_path), read_array(gt_path)
    psnr = peak_signal_noise_ratio(gt, pred, data_range=255)
    ssim = structural_similarity(
        gt, pred, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
    )
    return float(psnr), float(ssim)


def skimage_loop(pred_dir: Path, gt_dir: Path) -> tuple[float, float]:
    """The plain loop: one process, pair after pair, then the means."""
    scores = [skimage_scores(path, gt_dir / path.name) for path in list_images(pred_dir)]
    return float(np.mean([psnr for psnr, _ in scores])), float(np.mean([ssim for _, ssim in scores]))


def cli_eval(pred_dir: Path, gt_dir: Path) -> tuple[float, float]:
    """``restore eval PRED --gt GT --json`` with default settings, in a fresh interpreter."""
    command = [sys.executable, "-m", "restorecli", "eval", str(pred_dir), "--gt", str(gt_dir), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"restore eval failed with status {done.returncode}:\n{done.stderr}")
    summary = json.loads(done.stdout)["summary"]
    return float(summary["psnr"]), float(summary["ssim"])


def library_eval(pred_dir: Path, gt_dir: Path, workers: int) -> tuple[float, float]:
    """``evaluate_paths`` with an explicit worker count."""
    report = evaluate_paths(pred_dir, gt_dir, EvalSettings(metrics=("psnr", "ssim")), workers=workers)
    return report.summary["psnr"], report.summary["ssim"]


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the CLI, the pool's workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(function: Callable[[], tuple[float, float]]) -> tuple[tuple[float, float], float, float]:
    """Means, wall seconds and CPU seconds of one run."""
    start, start_cpu = time.perf_counter(), cpu_seconds()
    means = function()
    return means, time.perf_counter() - start, cpu_seconds() - start_cpu


@dataclass(frozen=True)
class Result:
    """The whole table, as printed and as written by ``--json``."""

    pairs: int
    size: int
    cpu_count: int
    rows: list[Row]
    tolerance: float = MEANS_TOLERANCE

    @property
    def means_agree(self) -> bool:
        return all(row.psnr_diff <= self.tolerance and row.ssim_diff <= self.tolerance for row in self.rows)

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "means_agree": self.means_agree}

    def print_table(self) -> None:
        print(
            f"{self.pairs} pairs of {self.size}x{self.size} RGB uint8 PNG, PSNR + SSIM, reading included, "
            f"{self.cpu_count} CPU cores"
        )
        titles = ("pairs/s", "wall s", "CPU s/pair", "speed-up", "|dPSNR|", "|dSSIM|")
        print(f"  {'':26s} " + " ".join(f"{title:>10s}" for title in titles))
        for row in self.rows:
            cells = (
                f"{row.pairs_per_s:.2f}",
                f"{row.seconds:.2f}",
                f"{row.cpu_s_per_pair:.3f}",
                f"{row.speedup:.2f}x",
                f"{row.psnr_diff:.1e}",
                f"{row.ssim_diff:.1e}",
            )
            print(f"  {row.name:26s} " + " ".join(f"{cell:>10s}" for cell in cells))
        verdict = "agree" if self.means_agree else "DISAGREE"
        print(
            f"  means {verdict} with the scikit-image loop (tolerance {self.tolerance:g}): "
            f"PSNR {self.rows[0].psnr:.4f} dB, SSIM {self.rows[0].ssim:.6f}"
        )


def run(pairs: int, size: int, workers: list[int]) -> Result:
    """Generate the pairs and time the scikit-image loop, the CLI, then each worker count."""
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as folder:
        pred_dir, gt_dir = generate_pairs(Path(folder), pairs, size)
        for path in list_images(pred_dir) + list_images(gt_dir):
            read_array(path)  # warm the page cache for every row alike
        # One untimed pair per side: one-off imports (scikit-image's lazy modules; torch, for the library's
        # torchrun session) stay out of the timings. The CLI row pays them, as a user's command does.
        skimage_scores(pred_dir / "0000.png", gt_dir / "0000.png")
        library_eval(pred_dir / "0000.png", gt_dir / "0000.png", workers=1)
        runs: list[tuple[str, int | None, Callable[[], tuple[float, float]]]] = [
            ("scikit-image loop", 1, lambda: skimage_loop(pred_dir, gt_dir)),
            ("restore eval (CLI)", None, lambda: cli_eval(pred_dir, gt_dir)),
        ]
        runs += [(f"evaluate_paths workers={n}", n, lambda n=n: library_eval(pred_dir, gt_dir, n)) for n in workers]
        rows: list[Row] = []
        for name, count, function in runs:
            (psnr, ssim), seconds, cpu = timed(function)
            loop = rows[0] if rows else None  # the scikit-image loop, once it has run
            rows.append(
                Row(
                    name=name,
                    workers=count,
                    seconds=seconds,
                    pairs_per_s=pairs / seconds,
                    cpu_s_per_pair=cpu / pairs,
                    speedup=(pairs / seconds) / loop.pairs_per_s if loop else 1.0,
                    psnr=psnr,
                    ssim=ssim,
                    psnr_diff=abs(psnr - loop.psnr) if loop else 0.0,
                    ssim_diff=abs(ssim - loop.ssim) if loop else 0.0,
                )
            )
    return Result(pairs, size, os.cpu_count() or 1, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100, help="number of image pairs")
    parser.add_argument("--size", type=int, default=1000, help="side in pixels (1000 = 1 megapixel)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="explicit library worker counts")
    parser.add_argument("--json", type=Path, help="also write the table as JSON here")
    args = parser.parse_args()
    if args.pairs < 1 or args.size < 11:
        parser.error("need at least 1 pair of at least 11x11 pixels (the SSIM window)")

    result = run(args.pairs, args.size, args.workers)
    result.print_table()
    if args.json is not None:
        args.json.write_text(json.dumps(result.as_dict(), indent=2) + "\n")
    if not result.means_agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
