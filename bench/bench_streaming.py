"""Streamed inference (exact, low memory) against the official path and today's tiles, in one run.

Every row runs in a fresh Python process (peak resident memory ``VmHWM`` is its own, address space
capped as in ``bench_performance.py``), on the same seeded weights and the same image:

- ``official``: the official formulation (``restorecli.testing.official``), whole image, fp32, as
  the official test scripts run it (``bench_performance.py``'s reference row);
- ``tiles``: ``restore_tensor`` with the automatic tile of a 2 GiB CPU work budget (what the engine
  chose before streaming: 368 px for Restormer at 1024x1024), overlapping and blended;
- ``streamed``: ``restore_tensor`` with its defaults, which stream a model that supports it
  (:mod:`restorecli.archs.streaming`); the row notes the strip height the engine chose;
- ``strip-N`` / ``strip-NxP``: ``streamed_forward`` directly with N-row strips, each in P pieces across
  the width (to compare strip heights and pieces: the engine's CPU choice is in ``engine/runner.py``);
- ``untiled``: ``restore_tensor`` on the whole image (restorecli's forward, not streamed);
- ``streamed-unaligned``: ``streamed`` without rounding the hidden GDFN maps up to whole vector
  registers (``restorecli.archs.ops.aligned_channels``), to measure that lever.

Each mode runs in fp32 and bf16 (autocast) unless it is ``official`` (fp32 only). Columns: seconds
per image, peak resident MiB, speed-up and memory relative to the official row, PSNR of the output
(clamped to [0, 1]) against the official output (or, where that row is not run, streamed fp32).

    python bench/bench_streaming.py                     # Restormer deraining, 1024x1024 (about 15 min, 2 cores)
    python bench/bench_streaming.py --12mp              # also 12 MP (slow: tens of minutes; no official row there)
    python bench/bench_streaming.py --modes strip-64,strip-48x8,strip-32x4 --precisions fp32
    python bench/bench_streaming.py --sizes 12mp --modes streamed --precisions bf16 --max-memory 3.5GiB
    python bench/bench_streaming.py --short             # tiny model and image, seconds (the tests run it)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

# bench/ is this script's folder, first on sys.path when it runs: reuse the performance bench's parts.
from bench_performance import (
    LEVERS,
    available_mib,
    load,
    make_runner,
    parse_size,
    peak_mib,
    photo_like,
    psnr,
    run_in_subprocess,
)

DEFAULT_MODEL = "restormer:deraining"
DEFAULT_MODES = "official,tiles,streamed"
SHORT_MODEL = "restormer:tiny"
SHORT_SIZE = "72x40"
# The work budget the engine's automatic tiles were sized by before streaming (its old CPU default).
TILE_BUDGET = 2 << 30
# Official-path peak per megapixel (bench/results/performance-official.txt: 8.7 GB at 1 MP), to skip
# what cannot fit.
OFFICIAL_MIB_PER_MEGAPIXEL = 8900


@dataclass
class Row:
    """One measured (or skipped) row."""

    size: str
    mode: str
    precision: str
    seconds: float | None = None
    peak_mib: float | None = None
    speedup: float | None = None
    memory_ratio: float | None = None
    psnr: float | None = None
    psnr_against: str = ""
    note: str = ""


# ------------------------------------------------------------------------------------------------
# Worker side: one row in this process.


def automatic_tile(descriptor) -> int:  # type: ignore[no-untyped-def]
    """The tile the engine's automatic tiling picks within :data:`TILE_BUDGET`."""
    from restorecli.engine.runner import estimate_bytes_per_pixel

    per_pixel = estimate_bytes_per_pixel(descriptor)
    multiple = descriptor.pad_multiple
    return int(math.sqrt(TILE_BUDGET / per_pixel)) // multiple * multiple


class _Notes(logging.Handler):
    """Keeps the engine's log messages, so a row can say how the engine ran it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def make_row_runner(descriptor, mode: str, precision: str, max_memory: str | None = None):  # type: ignore[no-untyped-def]
    """The function one row times: image tensor in, clamped output tensor out."""
    import torch

    from restorecli.archs.streaming import streamed_forward
    from restorecli.engine.allocator import keep_freed_memory
    from restorecli.engine.options import RunOptions, parse_memory_size
    from restorecli.engine.padding import crop, pad_to_multiple
    from restorecli.engine.runner import restore_tensor

    if mode == "official":
        return make_runner(descriptor, LEVERS["reference"], "fp32")
    if mode.startswith("strip-"):
        keep_freed_memory()
        strip, _, pieces = mode.removeprefix("strip-").partition("x")
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]

        def streamed(x: torch.Tensor) -> torch.Tensor:
            padded = pad_to_multiple(x, descriptor.pad_multiple, descriptor.pad_mode)
            padded = padded.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                out = streamed_forward(descriptor.module, padded, int(strip), pieces=int(pieces or 1))
            return crop(out.float(), *x.shape[-2:]).clamp(0, 1)

        return streamed
    if mode == "streamed-unaligned":
        # The lever off: the hidden GDFN maps keep their odd width (255 channels for dim 48).
        import restorecli.archs.streaming

        restorecli.archs.streaming.aligned_channels = lambda channels: 0
    cap = None if max_memory is None else parse_memory_size(max_memory)
    options = {
        "tiles": RunOptions(tile=automatic_tile(descriptor), precision=precision),
        "streamed": RunOptions(precision=precision, max_memory=cap),
        "streamed-unaligned": RunOptions(precision=precision, max_memory=cap),
        "untiled": RunOptions(tile=1 << 30, tile_batch=1, precision=precision),
    }[mode]
    return lambda x: restore_tensor(descriptor, x, options)


def run_row(args: argparse.Namespace) -> dict[str, object]:
    """Measure one row in this process."""
    import torch

    torch.set_num_threads(args.threads)
    notes = _Notes()
    engine_log = logging.getLogger("restorecli.engine")
    engine_log.addHandler(notes)
    engine_log.setLevel(logging.DEBUG)
    descriptor = load(args.model)
    height, width = parse_size(args.size)
    x = torch.from_numpy(photo_like(height, width))[None]
    run = make_row_runner(descriptor, args.mode, args.precision, args.max_memory)
    run(x[..., :64, :64])  # one-time initialisation (oneDNN kernels, thread pool) outside the timing
    notes.messages.clear()
    start = time.perf_counter()
    output = run(x)
    seconds = time.perf_counter() - start
    np.save(args.save, output[0].float().numpy())
    return {"seconds": seconds, "peak_mib": peak_mib(), "notes": notes.messages[-2:]}


# ------------------------------------------------------------------------------------------------
# Parent side: rows in subprocesses, the table.


def measure(args: argparse.Namespace, size: str, mode: str, precision: str, save: Path) -> dict[str, object]:
    """Run one row in a fresh process; its JSON result or ``{"error": ...}``."""
    command = [sys.executable, __file__, "--row", "--model", args.model, "--size", size, "--mode", mode]
    command += ["--precision", precision, "--threads", str(args.threads), "--save", str(save)]
    command += [] if args.max_memory is None else ["--max-memory", args.max_memory]
    return run_in_subprocess(command, args.timeout)


def run_size(args: argparse.Namespace, size: str, folder: Path, rows: list[Row]) -> None:
    """Every mode and precision at one size, then ratios and PSNRs against the official (or streamed fp32) row."""
    height, width = parse_size(size)
    outputs: dict[tuple[str, str], Path] = {}
    measured: dict[tuple[str, str], Row] = {}
    for mode in args.modes:
        for precision in ["fp32"] if mode == "official" else args.precisions:
            row = Row(size, mode, precision)
            rows.append(row)
            needed = OFFICIAL_MIB_PER_MEGAPIXEL * height * width / 1e6
            if mode == "official" and needed > 0.8 * available_mib():
                row.note = f"not run: needs about {needed / 1024:.0f} GiB, {available_mib() / 1024:.0f} GiB available"
                print_row(row)
                continue
            path = folder / f"{size}-{mode}-{precision}.npy"
            result = measure(args, size, mode, precision, path)
            if "error" in result:
                row.note = str(result["error"])
            else:
                row.seconds, row.peak_mib = float(result["seconds"]), float(result["peak_mib"])
                row.note = " | ".join(str(note) for note in result["notes"])[:160]
                outputs[mode, precision] = path
                measured[mode, precision] = row
            print_row(row, provisional=True)
    reference_key = ("official", "fp32") if ("official", "fp32") in measured else ("streamed", "fp32")
    reference = measured.get(reference_key)
    for key, row in measured.items():
        if reference is not None and key != reference_key:
            row.psnr = psnr(np.load(outputs[key]), np.load(outputs[reference_key]))
            row.psnr_against = "-".join(reference_key)
        official = measured.get(("official", "fp32"))
        if official is not None and key != ("official", "fp32"):
            row.speedup = official.seconds / row.seconds
            row.memory_ratio = row.peak_mib / official.peak_mib
    for path in outputs.values():
        path.unlink(missing_ok=True)


HEADER = f"{'size':>9} {'mode':<10} {'prec':<5} {'s/img':>8} {'peak MiB':>9} {'speed-up':>8} {'memory':>7} {'PSNR dB':>20}  note"


def print_row(row: Row, provisional: bool = False) -> None:
    """One table line (provisional lines show progress before the ratios are known)."""
    if row.seconds is None:
        print(f"{row.size:>9} {row.mode:<10} {row.precision:<5} {row.note}", flush=True)
        return
    speed = f"{row.speedup:.2f}x" if row.speedup else ""
    memory = f"{row.memory_ratio:.3f}" if row.memory_ratio else ""
    quality = f"{row.psnr:.1f} vs {row.psnr_against}" if row.psnr is not None else ""
    note = "(measured; ratios below)" if provisional else row.note
    print(
        f"{row.size:>9} {row.mode:<10} {row.precision:<5} {row.seconds:>8.2f} {row.peak_mib:>9.0f} {speed:>8} "
        f"{memory:>7} {quality:>20}  {note}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"arch:config with seeded weights, or a zoo name (default {DEFAULT_MODEL})",
    )
    parser.add_argument("--sizes", default="1024", help="comma-separated sides, HxW or 12mp (default 1024)")
    parser.add_argument("--12mp", dest="twelve", action="store_true", help="also run 12 MP (3000x4000)")
    parser.add_argument(
        "--modes",
        default=DEFAULT_MODES,
        help="official, tiles, streamed, streamed-unaligned, untiled, strip-N (comma-separated)",
    )
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated subset of fp32, bf16")
    parser.add_argument("--max-memory", metavar="SIZE", help="the streamed rows' memory cap, as restore's --max-memory")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per row")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one row may take")
    parser.add_argument("--short", action="store_true", help="tiny model and image: an end-to-end check in seconds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--row", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        print(json.dumps(run_row(args)))
        return
    if args.short:
        args.model, args.sizes = SHORT_MODEL, SHORT_SIZE
    sizes = args.sizes.split(",") + (["12mp"] if args.twelve else [])
    args.modes = [mode for mode in args.modes.split(",") if mode]
    args.precisions = [precision for precision in args.precisions.split(",") if precision]
    print(
        f"{args.model}; {os.cpu_count()} CPU cores, torch threads {args.threads}, "
        f"load average {os.getloadavg()[0]:.1f}, {available_mib() / 1024:.1f} GiB available"
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as folder:
        print(HEADER)
        for size in sizes:
            run_size(args, size, Path(folder), rows)
    print("\nWith ratios and PSNRs:")
    print(HEADER)
    for row in rows:
        print_row(row)
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    if args.json:
        args.json.write_text(
            json.dumps({"model": args.model, "threads": args.threads, "rows": [asdict(r) for r in rows]}, indent=1)
        )


if __name__ == "__main__":
    main()
