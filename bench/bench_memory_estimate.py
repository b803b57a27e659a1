"""Calibrate the runner's memory estimate: predicted against measured peak memory of untiled runs.

For each model and size, a fresh Python process builds the model (seeded random weights: memory
does not depend on them), takes the runner's per-pixel estimate (``estimate_bytes_per_pixel``, a
32-pixel probe), then restores one image untiled through ``restore_tensor`` in fp32 and records the
resident peak (``VmHWM``) above the resident size just before the run. The ratio measured/estimated
says how far the estimate is from the truth (the runner tiles when the estimate exceeds its budget,
so an estimate far above the truth tiles images that would fit).

    python bench/bench_memory_estimate.py                                    # Restormer 512 and 1024
    python bench/bench_memory_estimate.py --models nafnet:sidd-width32 --sizes 512
    python bench/bench_memory_estimate.py --short                            # tiny models, seconds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def measure(model: str, size: int, threads: int) -> dict[str, float]:
    """In this process: estimate, run untiled once, and return both in MiB (and the seconds)."""
    import torch

    from restorecli.engine.options import RunOptions
    from restorecli.engine.padding import round_up
    from restorecli.engine.runner import estimate_bytes_per_pixel, restore_tensor
    from restorecli.zoo.architectures import build_model, get_arch, resolve_config
    from restorecli.zoo.loader import describe

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    arch, config = model.split(":")
    kwargs = resolve_config(get_arch(arch), config)
    descriptor = describe(build_model(arch, kwargs).eval(), model, arch, kwargs)
    per_pixel = estimate_bytes_per_pixel(descriptor)
    side = round_up(size, descriptor.pad_multiple)
    x = torch.rand(1, descriptor.in_channels, size, size)
    Path("/proc/self/clear_refs").write_text("5")  # restart the peak (VmHWM) at the current size
    before = _status_bytes("VmRSS")
    started = time.perf_counter()
    restore_tensor(descriptor, x, RunOptions(tile=side, tile_batch=1))
    seconds = time.perf_counter() - started
    peak = _status_bytes("VmHWM")
    mib = 1 << 20
    return {
        "estimate_mib": per_pixel * side * side / mib,
        "measured_mib": (peak - before) / mib,
        "seconds": seconds,
    }


def _status_bytes(field: str) -> int:
    """A ``/proc/self/status`` size (Linux only: this script measures there)."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1]) * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="restormer:deraining", help="comma-separated arch:config")
    parser.add_argument("--sizes", default="512,1024", help="comma-separated square sizes")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: PyTorch's default)")
    parser.add_argument("--short", action="store_true", help="tiny models and sizes (the tests run it)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: MODEL@SIZE measured in this process
    args = parser.parse_args()
    if args.row:
        model, size = args.row.rsplit("@", 1)
        print(json.dumps(measure(model, int(size), args.threads)))
        return
    models = ["restormer:tiny", "nafnet:tiny"] if args.short else args.models.split(",")
    sizes = [64] if args.short else [int(s) for s in args.sizes.split(",")]
    rows = []
    print(f"{'model':<24} {'size':>5} {'estimate MiB':>13} {'measured MiB':>13} {'ratio':>6} {'s':>7}")
    for model in models:
        for size in sizes:
            command = [sys.executable, __file__, "--row", f"{model}@{size}", "--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row = {"model": model, "size": size, **json.loads(done.stdout.splitlines()[-1])}
            row["ratio"] = row["measured_mib"] / row["estimate_mib"]
            rows.append(row)
            print(
                f"{model:<24} {size:>5} {row['estimate_mib']:>13.0f} {row['measured_mib']:>13.0f} "
                f"{row['ratio']:>6.2f} {row['seconds']:>7.1f}"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
