"""Reproduce a paper's number: restore a test set with a zoo entry and score it with that paper's protocol.

Usage (the test sets are not shipped; download them from the papers' pages)::

    python bench/reproduce.py restormer-derain --input Rain100H/input --gt Rain100H/target
    python bench/reproduce.py nafnet-sidd-width32 --input SIDD/noisy --gt SIDD/gt --device cuda

The protocol is the one the entry's score was produced with (``PretrainedEntry.protocol``, the same
preset as ``restore eval --protocol``); the script prints the measured means beside the paper's
string, and ``--json`` prints both as data. ``--weights FILE`` uses a local file for the entry.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from restorecli import RunOptions, load_model, restore_image
from restorecli.metrics import EvalSettings
from restorecli.metrics.evaluate import evaluate_paths
from restorecli.zoo import pretrained


def reproduce(
    entry_name: str,
    inputs: Path,
    gt: Path,
    *,
    weights: Path | None = None,
    device: str = "auto",
    options: RunOptions | None = None,
    protocol: str | None = None,
) -> dict[str, object]:
    """Restore ``inputs`` with the entry, score against ``gt`` with its protocol; the paper's score beside."""
    entry = pretrained.get_entry(entry_name)
    chosen = protocol or entry.protocol
    if chosen is None:
        raise SystemExit(f"{entry.name} reports no score to reproduce ({entry.paper_score}); pass --protocol")
    model = load_model(entry.name, device=device, weights=weights)
    report = evaluate_paths(
        inputs,
        gt,
        EvalSettings.for_protocol(chosen),
        transform=lambda _source, image: restore_image(model, image, options=options),
    )
    return {
        "entry": entry.name,
        "protocol": chosen,
        "images": report.count,
        "measured": report.summary,
        "paper": entry.paper_score,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("entry", help="zoo entry name (restore models lists them)")
    parser.add_argument("--input", type=Path, required=True, help="degraded test images")
    parser.add_argument("--gt", type=Path, required=True, help="ground truth, matched by file stem")
    parser.add_argument("--weights", type=Path, help="a local weights file for the entry")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--protocol", help="override the entry's protocol (restore eval --protocol names)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    result = reproduce(
        args.entry, args.input, args.gt, weights=args.weights, device=args.device, protocol=args.protocol
    )
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    measured = " ".join(f"{name} {value:.4f}" for name, value in result["measured"].items())  # type: ignore[union-attr]
    print(f"{result['entry']} on {result['images']} images, protocol {result['protocol']}")
    print(f"  measured: {measured}")
    print(f"  paper:    {result['paper']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
