"""What the model cards' benchmark scripts share: scoring one degradation case, and reporting the table.

``bench_denoise_levels.py`` and ``bench_derain_presets.py`` each make a model's table (one row per
noise level or rain model); ``--card`` records it in the model card (``restorecli.zoo.card.Benchmark``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from restorecli import ModelDescriptor, restore_image
from restorecli.zoo.card import record_benchmarks

REPOSITORY = Path(__file__).resolve().parents[1]
KODAK = REPOSITORY.parent / "shared" / "data" / "val" / "Kodak24"

Score = Callable[[np.ndarray, np.ndarray], float]
Restore = Callable[[np.ndarray], np.ndarray]


def score_case(
    restore: Restore,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    score: Score,
    case: str,
    **labels: object,
) -> dict[str, object]:
    """One table row: the mean ``score(image, clean)`` of the degraded inputs and of their restorations.

    ``restore`` maps a degraded image to its restoration (a model: :func:`restorer`; or a classical
    method); ``pairs`` yields ``(clean, degraded)`` arrays; ``labels`` are extra columns of the row.
    ``per_image`` keeps each restored score in order (for comparing two methods image by image).
    """
    inputs, outputs = [], []
    started = time.perf_counter()
    for clean, degraded in pairs:
        inputs.append(score(degraded, clean))
        outputs.append(score(restore(degraded), clean))
    return {
        "case": case,
        **labels,
        "images": len(inputs),
        "input_psnr": float(np.mean(inputs)),
        "psnr": float(np.mean(outputs)),
        "seconds": round(time.perf_counter() - started, 1),
        "per_image": outputs,
    }


def restorer(model: ModelDescriptor) -> Restore:
    """``model`` as a :data:`Restore` function (the engine's :func:`~restorecli.restore_image`)."""
    return lambda image: restore_image(model, image)


def add_table_arguments(parser: argparse.ArgumentParser, model: str) -> None:
    """The options every table script takes (``model``: the default zoo entry)."""
    parser.add_argument("--model", default=model, help="zoo name or weights file")
    parser.add_argument("--clean", type=Path, default=KODAK, help="clean images (default: shared Kodak24)")
    parser.add_argument("--limit", type=int, help="only the first N images (quick checks)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--card", type=Path, help="also record the rows as the benchmark table of this model card")


def report(args: argparse.Namespace, rows: list[dict[str, object]], metric: str, protocol: str) -> None:
    """Print the table; write it to ``--json`` and ``--card`` when given."""
    print(f"{args.model} on {args.clean} ({rows[0]['images']} images), {metric} dB (input -> restored)")
    for row in rows:
        print(f"  {row['case']:24s} {row['input_psnr']:6.2f} -> {row['psnr']:6.2f}  ({row['seconds']} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    if args.card:
        record_benchmarks(args.card, rows, os.path.relpath(args.clean, REPOSITORY), protocol)
