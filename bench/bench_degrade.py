"""Per-call cost of each synthetic degradation on one patch, as the training data pipeline calls them.

Run: ``python bench/bench_degrade.py [--size 256] [--repeats 50]``. Prints, per call on one thread,
the median wall time and the median CPU time of the calling thread (the latter is what the call
costs even when other processes load the machine), plus the cost of the benchmark-protocol noise.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import cv2
import numpy as np

from restorecli.data.degradations import (
    RAIN_PRESETS,
    BlurParams,
    DegradationParams,
    NoiseParams,
    benchmark_gaussian_noise,
    degrade,
    random_motion_kernel,
)


def time_call(call: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall and median thread-CPU milliseconds per call (after one warm-up call)."""
    call()
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.thread_time()
        call()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.thread_time() - start_cpu) * 1e3)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256, help="Patch side in pixels.")
    parser.add_argument("--repeats", type=int, default=50, help="Timed calls per case.")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # a DataLoader worker gets one core
    rng = np.random.default_rng(0)
    patch = rng.random((args.size, args.size, 3), dtype=np.float32)
    cases: list[tuple[str, str, DegradationParams]] = [
        ("noise sigma=25", "noise", NoiseParams(sigma=25.0)),
        ("noise sigma in [0,50]", "noise", NoiseParams(sigma_range=(0.0, 50.0))),
        ("blur linear 9-31", "blur", BlurParams(kind="linear")),
        ("blur shake 9-31", "blur", BlurParams(kind="shake")),
        ("blur mixed 9-31", "blur", BlurParams()),
        *((f"rain {name}", "rain", params) for name, params in RAIN_PRESETS.items()),
    ]
    print(f"{args.size}x{args.size}x3 float32 patch, {args.repeats} calls, 1 thread")
    print(f"{'case':<26}{'wall ms':>9}{'cpu ms':>9}")
    for label, kind, params in cases:
        wall, cpu = time_call(partial(degrade, kind, patch, rng, params), args.repeats)  # type: ignore[arg-type]
        print(f"{label:<26}{wall:>9.2f}{cpu:>9.2f}")
    wall, cpu = time_call(lambda: random_motion_kernel(rng, BlurParams(kind="shake")), args.repeats)
    print(f"{'shake kernel only':<26}{wall:>9.2f}{cpu:>9.2f}")
    pixels = (patch * 255).astype(np.uint8)
    wall, cpu = time_call(lambda: benchmark_gaussian_noise(pixels, 25.0), args.repeats)
    print(f"{'benchmark-protocol noise':<26}{wall:>9.2f}{cpu:>9.2f}")


if __name__ == "__main__":
    main()
