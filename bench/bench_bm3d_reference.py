"""BM3D and CBM3D on the denoise card's inputs: the classical baseline issue 17 asks the default to beat.

The same noisy images as ``bench_denoise_levels.py`` (Kodak24, ``np.random.seed(0)`` per image,
rounded and clipped to 8 bits; grey as Pillow's ``L``), denoised by the ``bm3d`` package (Mäkinen,
Azzari and Foi's reference implementation: ``bm3d_rgb`` for colour, ``bm3d`` for grey, told the true
sigma), rounded to 8 bits and scored with the same PSNR. It is a reference, not a restorecli
dependency: ``pip install bm3d`` first. About 18 s per colour and 7 s per grey image on 2 cores.

    python bench/bench_bm3d_reference.py --json bench/results/bm3d-reference.json
    python bench/bench_bm3d_reference.py --sigmas 25 --modes grey --limit 4
    python bench/bench_bm3d_reference.py --sigmas 25 --modes colour --compare restorecli-denoise  # per image
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

# bench/ is this script's folder, first on sys.path when it runs.
from bench_denoise_levels import noisy_pairs, rgb_psnr
from card_table import KODAK, restorer, score_case

from restorecli import load_model
from restorecli.images import list_images


def denoise(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BM3D (grey) or CBM3D (colour) of an 8-bit image, told the noise level, back to 8 bits."""
    import bm3d

    run = bm3d.bm3d if noisy.ndim == 2 else bm3d.bm3d_rgb
    restored = run(noisy.astype(np.float64) / 255.0, sigma / 255.0)
    return np.clip(np.round(np.asarray(restored) * 255.0), 0, 255).astype(np.uint8)


def measure(
    folder: Path, modes: list[str], sigmas: list[float], limit: int | None, compare: str | None = None
) -> list[dict[str, object]]:
    """One row per mode and sigma; with ``compare`` (a zoo name or weights file) that model's row follows
    each, and the images it loses or wins on are printed (where a network loses to the classical method)."""
    model = restorer(load_model(compare, device="cpu")) if compare else None
    files = list_images(folder)[:limit]
    rows = []
    for mode in modes:
        for sigma in sigmas:
            case = f"{mode} sigma {sigma:g}"
            method = "CBM3D" if mode == "colour" else "BM3D"
            reference = score_case(
                lambda noisy, sigma=sigma: denoise(noisy, sigma),
                noisy_pairs(files, mode, sigma),
                rgb_psnr,
                case,
                method=method,
            )
            rows.append(reference)
            _print(reference)
            if model is None:
                continue
            compared = score_case(model, noisy_pairs(files, mode, sigma), rgb_psnr, case, method=compare)
            rows.append(compared)
            for path, ours, theirs in zip(files, compared["per_image"], reference["per_image"], strict=True):  # type: ignore[call-overload]
                print(f"    {path.name:14s} {method} {theirs:6.2f}  {compare} {ours:6.2f} ({ours - theirs:+.2f})")
            _print(compared)
    return rows


def _print(row: dict[str, object]) -> None:
    print(
        f"  {row['case']:18s} {row['method']!s:5s} {row['input_psnr']:6.2f} -> {row['psnr']:6.2f}  ({row['seconds']} s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clean", type=Path, default=KODAK, help="clean images (default: shared Kodak24)")
    parser.add_argument("--modes", default="colour,grey")
    parser.add_argument("--sigmas", default="15,25,50")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--compare", default=None, help="also score this model (zoo name or file) per image")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    print(f"bm3d on {args.clean}, PSNR dB (input -> restored)")
    sigmas = [float(s) for s in args.sigmas.split(",")]
    rows = measure(args.clean, args.modes.split(","), sigmas, args.limit, args.compare)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
