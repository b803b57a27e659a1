"""Inference speed, memory and efficiency of restorecli against the official test.py path, in one run.

Every row runs in a fresh Python process, so its peak resident memory (``VmHWM``) is its own:

- ``reference``: what the official test scripts do: the official forward (the unoptimised
  formulation in :mod:`restorecli.testing.official`, on the same weights), the whole image, fp32,
  Restormer reflect-padded to a multiple of 8 (NAFNet pads inside its forward), ``torch.no_grad``,
  PyTorch's default memory format and glibc's default allocator;
- ``fp32`` / ``bf16``: ``restorecli.engine.restore_tensor`` with its defaults (automatic tiles within
  the CPU work budget, channels-last where the architecture prefers it, freed memory kept) at that
  precision (bf16: autocast).

Columns: seconds per image, megapixels/s, peak resident MiB, achieved GFLOP/s (the official
formulation's FLOPs for the image divided by the wall time: tile overlaps and regrouping do not
inflate it), speed-up and memory relative to the reference row of the same case, and the PSNR of
the output against the reference output (fp32: the tiling tolerance) or against restorecli fp32
(bf16). Outputs are clamped to [0, 1] as saved images are.

Measured in the same run, so every ratio holds on a noisy machine: the fp32 and bf16 matrix-multiply
peak (GFLOP/s, 4096^3, best of 3), and the share of that peak the convolutions and matrix products
of one case reach (their FLOPs / the time measured around each of them: ``restorecli.profiling.ProductTimer``).

``--levers CASE`` instead adds restorecli's levers one at a time to the reference, one row each.

    python bench/bench_performance.py                  # the full table (about 40 min on 2 cores)
    python bench/bench_performance.py --short          # tiny sizes and models, seconds (the tests run it)
    python bench/bench_performance.py --models restormer:deraining --sizes 512 --modes reference,fp32
    python bench/bench_performance.py --levers restormer:deraining@512
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

DEFAULT_MODELS = "restormer:deraining,nafnet:sidd-width32,restorecli-derain,restorecli-deblur,restorecli-denoise"
DEFAULT_SIZES = "256,512,1024,12mp"
SHORT_MODELS = "restormer:tiny,nafnet:tiny"
SHORT_SIZES = "48,96"
NAMED_SIZES = {"12mp": (3000, 4000)}  # a 12-megapixel 4:3 photograph, landscape
MODES = ("reference", "fp32", "bf16")
# The lever ladder: each row adds one lever to the row above. The last two equal the fp32/bf16 modes.
LEVERS: dict[str, dict[str, str]] = {
    "reference": {"forward": "official", "allocator": "system", "layout": "contiguous", "tile": "none"},
    "+ keep freed memory": {"forward": "official", "allocator": "keep", "layout": "contiguous", "tile": "none"},
    "+ restorecli forward": {"forward": "ours", "allocator": "keep", "layout": "contiguous", "tile": "none"},
    "+ channels-last": {"forward": "ours", "allocator": "keep", "layout": "channels-last", "tile": "none"},
    "+ automatic tiles (= fp32)": {"forward": "ours", "allocator": "keep", "layout": "auto", "tile": "auto"},
    "+ bf16 autocast (= bf16)": {"forward": "ours", "allocator": "keep", "layout": "auto", "tile": "auto"},
}
MODE_LEVERS = {"reference": "reference", "fp32": "+ automatic tiles (= fp32)", "bf16": "+ bf16 autocast (= bf16)"}
# Address space one row may reserve, as a share of the memory available when it starts.
ROW_MEMORY_SHARE = 0.9


@dataclass
class Row:
    """One measured (or skipped) row of the table."""

    model: str
    size: str
    mode: str
    seconds: float | None = None
    peak_mib: float | None = None
    gflops: float | None = None
    megapixels: float = 0.0
    speedup: float | None = None
    memory_ratio: float | None = None
    psnr: float | None = None
    psnr_against: str = ""
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# Worker side: one row in this process.


def parse_size(text: str) -> tuple[int, int]:
    """``"512"`` -> (512, 512); ``"12mp"`` -> (3000, 4000); ``"300x400"`` -> (300, 400)."""
    text = text.strip().lower()
    if text in NAMED_SIZES:
        return NAMED_SIZES[text]
    height, _, width = text.partition("x")
    return int(height), int(width or height)


def photo_like(height: int, width: int) -> np.ndarray:
    """A deterministic smooth colour image with fine texture, ``(3, H, W)`` float32 in [0, 1]."""
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    cols = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    planes = [0.5 + 0.3 * np.sin(2 * np.pi * (3 + c) * rows + c) * np.cos(2 * np.pi * (2 + c) * cols) for c in range(3)]
    texture = 0.05 * np.sin(97 * rows * (1 + cols)) * np.cos(89 * cols)
    return np.clip(np.stack(planes) + texture, 0, 1).astype(np.float32)


def load(model: str):  # type: ignore[no-untyped-def]
    """A ModelDescriptor on the CPU: ``arch:config`` with seeded random weights, or a zoo name."""
    import torch

    from restorecli.zoo.architectures import build_model, get_arch, resolve_config
    from restorecli.zoo.loader import describe, load_descriptor

    if ":" not in model:
        return load_descriptor(model)
    arch, config = model.split(":", 1)
    torch.manual_seed(0)  # the same weights in every row's process
    spec = get_arch(arch)
    kwargs = resolve_config(spec, config)
    return describe(build_model(spec, kwargs).eval(), model, arch, kwargs)


def official_flops(descriptor, height: int, width: int) -> int:  # type: ignore[no-untyped-def]
    """FLOPs of the official formulation for an ``H x W`` image (padded as inference pads it)."""
    from restorecli.engine.padding import round_up
    from restorecli.profiling import count_macs
    from restorecli.testing.official import OfficialForward

    shape = (
        1,
        descriptor.in_channels,
        round_up(height, descriptor.pad_multiple),
        round_up(width, descriptor.pad_multiple),
    )
    return count_macs(OfficialForward(descriptor.module), shape).flops


def make_runner(descriptor, lever: dict[str, str], precision: str) -> Callable:  # type: ignore[no-untyped-def]
    """The function one row times: image tensor in, clamped output tensor out."""
    import torch
    import torch.nn.functional as F

    from restorecli.engine.allocator import keep_freed_memory
    from restorecli.engine.options import RunOptions
    from restorecli.engine.runner import restore_tensor
    from restorecli.testing.official import OfficialForward

    if lever["allocator"] == "keep":
        keep_freed_memory()
    if lever["forward"] == "official":
        module = OfficialForward(descriptor.module).eval()
        multiple = descriptor.pad_multiple if descriptor.pad_mode == "reflect" else 1

        def official(x: torch.Tensor) -> torch.Tensor:
            height, width = x.shape[-2:]
            padded = F.pad(x, (0, -width % multiple, 0, -height % multiple), mode="reflect") if multiple > 1 else x
            with torch.no_grad():
                return module(padded)[..., :height, :width].clamp(0, 1)

        return official
    options: dict[str, object] = {"precision": precision}
    if lever["layout"] != "auto":
        options["channels_last"] = lever["layout"] == "channels-last"
    if lever["tile"] == "none":
        options.update(tile=1 << 30, tile_batch=1)
    elif lever["tile"] != "auto":
        options["tile"] = int(lever["tile"])
    run_options = RunOptions(**options)  # type: ignore[arg-type]
    return lambda x: restore_tensor(descriptor, x, run_options)


def product_efficiency(run: Callable, x) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """GFLOP/s of convolutions and matrix products alone, from one timed run, with and without depthwise convs.

    ``timed_seconds`` is the whole run under the timer, to compare with the row's untimed time.
    """
    from restorecli.profiling import ProductTimer

    timer = ProductTimer()
    start = time.perf_counter()
    with timer:
        run(x)
    timed = time.perf_counter() - start
    rates = {f"{kind}_gflops": timer.gflops(kind) for kind in timer.flops}
    return {**rates, "timed_seconds": timed}


def peak_mib() -> float:
    """This process's peak resident memory in MiB (``VmHWM``: its own since ``exec``, unlike ``ru_maxrss``)."""
    from restorecli.profiling.runtime import resident_bytes

    return resident_bytes()[1] / 2**20


def run_row(args: argparse.Namespace) -> dict[str, object]:
    """Measure one row in this process."""
    import torch

    torch.set_num_threads(args.threads)
    lever = LEVERS[args.lever]
    precision = "bf16" if args.lever.startswith("+ bf16") else "fp32"
    descriptor = load(args.model)
    height, width = parse_size(args.size)
    x = torch.from_numpy(photo_like(height, width))[None]
    run = make_runner(descriptor, lever, precision)
    run(x[..., :64, :64])  # one-time initialisation (oneDNN kernels, thread pool) outside the timing
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        output = run(x)
        times.append(time.perf_counter() - start)
    result: dict[str, object] = {"seconds": min(times), "peak_mib": peak_mib()}
    result["flops"] = official_flops(descriptor, height, width)
    if args.save:
        np.save(args.save, output[0].float().numpy())
    if args.profile_products:
        result.update(product_efficiency(run, x))
    return result


# ------------------------------------------------------------------------------------------------
# Parent side: machine peak, rows in subprocesses, the table.


def matmul_peak(dtype_name: str, threads: int, n: int) -> float:
    """Best-of-3 GFLOP/s of an ``n x n`` matrix product in ``dtype_name`` on ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two [0, 1] arrays (inf when equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def measure(
    args: argparse.Namespace, model: str, size: str, lever: str, save: Path | None, efficiency: bool
) -> dict[str, object]:
    """Run one row in a fresh process; returns its JSON result or ``{"error": ...}``."""
    height, width = parse_size(size)
    repeats = args.repeats or max(1, min(3, int(2**20 * 1.5 // (height * width))))
    command = [sys.executable, __file__, "--row", "--model", model, "--size", size, "--lever", lever]
    command += ["--threads", str(args.threads), "--repeats", str(repeats)]
    if save is not None:
        command += ["--save", str(save)]
    if efficiency:
        command.append("--profile-products")
    return run_in_subprocess(command, args.timeout)


def run_in_subprocess(command: list[str], timeout: float) -> dict[str, object]:
    """Run one row's command in a fresh process under the memory cap; its JSON result or ``{"error": ...}``."""
    limit = int(ROW_MEMORY_SHARE * available_mib()) << 20
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            preexec_fn=(lambda: limit_address_space(limit)) if os.name == "posix" else None,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        return {"error": tail[:120]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def limit_address_space(limit: int) -> None:
    """Cap this (child) process's address space, so a row too large for memory fails with an error.

    Without the cap, the kernel's out-of-memory killer ends such a row (``exit code -9``) after it
    has pushed the rest of the machine out of memory; with it, the allocation that would not fit fails.
    """
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def available_mib() -> float:
    """Available memory in MiB, as the engine reads it (``MemAvailable`` on Linux)."""
    from restorecli.engine.runner import cpu_available_memory

    return cpu_available_memory() / 2**20


def run_case(
    args: argparse.Namespace,
    model: str,
    size: str,
    rows: list[Row],
    folder: Path,
    reference_peaks: dict[str, tuple[float, float]],
) -> None:
    """The reference and restorecli rows of one model at one size, with ratios and PSNRs."""
    height, width = parse_size(size)
    megapixels = height * width / 1e6
    outputs: dict[str, Path] = {}
    results: dict[str, dict[str, object]] = {}
    for mode in args.modes:
        row = Row(model, size, mode, megapixels=megapixels)
        rows.append(row)
        if mode == "reference" and model in reference_peaks:
            # Peak memory of the reference grows with the pixels: skip what cannot fit.
            peak, pixels = reference_peaks[model]
            needed = peak * height * width / pixels
            if needed > 0.8 * available_mib():
                row.note = f"not run: needs about {needed / 1024:.0f} GiB, {available_mib() / 1024:.0f} GiB available"
                print_row(row)
                continue
        outputs[mode] = folder / f"{model.replace(':', '_')}-{size}-{mode}.npy"
        efficiency = args.efficiency == f"{model}@{size}" and mode == "fp32"
        result = measure(args, model, size, MODE_LEVERS[mode], outputs[mode], efficiency)
        results[mode] = result
        if "error" in result:
            row.note = str(result["error"])
            print_row(row)
            continue
        row.seconds, row.peak_mib = float(result["seconds"]), float(result["peak_mib"])
        row.gflops = float(result["flops"]) / row.seconds / 1e9
        if "product_gflops" in result:
            row.extra = {key: float(result[key]) for key in ("product_gflops", "dense_gflops", "timed_seconds")}
        if mode == "reference":
            reference_peaks[model] = (row.peak_mib, height * width)
        reference = results.get("reference", {})
        if mode != "reference" and "seconds" in reference:
            row.speedup = float(reference["seconds"]) / row.seconds
            row.memory_ratio = row.peak_mib / float(reference["peak_mib"])
        against = {"fp32": "reference", "bf16": "fp32"}.get(mode)
        if against in results and "seconds" in results[against]:
            row.psnr = psnr(np.load(outputs[mode]), np.load(outputs[against]))
            row.psnr_against = against
        print_row(row)
    for path in outputs.values():
        path.unlink(missing_ok=True)


HEADER = (
    f"{'model':<20} {'size':>9} {'mode':<26} {'s/img':>8} {'MP/s':>7} {'peak MiB':>9} {'GFLOP/s':>8} "
    f"{'speed-up':>8} {'memory':>7} {'PSNR dB':>14}"
)


def print_row(row: Row) -> None:
    """One table line as soon as it is measured (long runs show progress)."""
    if row.seconds is None:
        print(f"{row.model:<20} {row.size:>9} {row.mode:<26} {row.note}", flush=True)
        return
    speed = f"{row.speedup:.2f}x" if row.speedup else ""
    memory = f"{row.memory_ratio:.2f}" if row.memory_ratio else ""
    quality = f"{row.psnr:.1f} vs {row.psnr_against}" if row.psnr is not None else ""
    print(
        f"{row.model:<20} {row.size:>9} {row.mode:<26} {row.seconds:>8.2f} {row.megapixels / row.seconds:>7.3f} "
        f"{row.peak_mib:>9.0f} {row.gflops:>8.1f} {speed:>8} {memory:>7} {quality:>14}",
        flush=True,
    )
    if row.extra:
        product = (
            f"{row.extra['product_gflops']:.1f} GFLOP/s (run timed per product: {row.extra['timed_seconds']:.2f} s)"
        )
        print(f"{'':<20} {'':>9} {'  conv + matmul only':<26} {product:>61}", flush=True)
        print(
            f"{'':<20} {'':>9} {'  without depthwise convs':<26} {row.extra['dense_gflops']:>42.1f} GFLOP/s", flush=True
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help=f"comma-separated arch:config or zoo names (default {DEFAULT_MODELS})")
    parser.add_argument("--sizes", help=f"comma-separated sides, HxW or 12mp (default {DEFAULT_SIZES})")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of: " + ", ".join(MODES))
    parser.add_argument("--levers", metavar="MODEL@SIZE", help="the lever ladder for one case instead of the table")
    parser.add_argument("--efficiency", metavar="MODEL@SIZE", help="profile conv/matmul GFLOP/s in this fp32 case")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per row")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per row, best kept (0: by size, 1-3)")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one row may take")
    parser.add_argument("--peak-size", type=int, default=4096, help="matrix side for the matmul peak")
    parser.add_argument("--short", action="store_true", help="tiny models and sizes: an end-to-end check in seconds")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--row", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--lever", help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--profile-products", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        try:
            print(json.dumps(run_row(args)))
        except (MemoryError, RuntimeError) as error:  # torch's CPU allocator raises a RuntimeError
            if isinstance(error, RuntimeError) and "can't allocate memory" not in str(error):
                raise
            sys.exit(f"out of memory: an allocation did not fit in {ROW_MEMORY_SHARE:.0%} of the available memory")
        return
    models = (args.models or (SHORT_MODELS if args.short else DEFAULT_MODELS)).split(",")
    sizes = (args.sizes or (SHORT_SIZES if args.short else DEFAULT_SIZES)).split(",")
    args.modes = [mode for mode in args.modes.split(",") if mode]
    if args.short:
        args.peak_size = min(args.peak_size, 512)
        args.efficiency = args.efficiency or f"{models[0]}@{sizes[-1]}"
    else:
        args.efficiency = args.efficiency or "restormer:deraining@512"
    peaks = {name: matmul_peak(name, args.threads, args.peak_size) for name in ("fp32", "bf16")}
    print(
        f"{os.cpu_count()} CPU cores, torch threads {args.threads}, load average {os.getloadavg()[0]:.1f}; "
        f"matmul peak {args.peak_size}^3: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s"
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-performance-") as folder:
        print(HEADER)
        if args.levers:
            model, _, size = args.levers.rpartition("@")
            for lever in LEVERS:
                row = Row(model, size, lever, megapixels=math.prod(parse_size(size)) / 1e6)
                result = measure(args, model, size, lever, None, False)
                if "error" in result:
                    row.note = str(result["error"])
                else:
                    row.seconds, row.peak_mib = float(result["seconds"]), float(result["peak_mib"])
                    row.gflops = float(result["flops"]) / row.seconds / 1e9
                    if rows and rows[0].seconds:
                        row.speedup, row.memory_ratio = rows[0].seconds / row.seconds, row.peak_mib / rows[0].peak_mib
                rows.append(row)
                print_row(row)
        else:
            reference_peaks: dict[str, tuple[float, float]] = {}
            for model in models:
                for size in sizes:
                    run_case(args, model, size, rows, Path(folder), reference_peaks)
    for row in rows:
        if row.extra:
            print(
                f"conv/matmul efficiency ({row.model} @ {row.size}, fp32): {row.extra['product_gflops'] / peaks['fp32']:.0%} "
                f"of the fp32 matmul peak; without depthwise convs {row.extra['dense_gflops'] / peaks['fp32']:.0%}"
            )
    print(f"load average {os.getloadavg()[0]:.1f} at end")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"matmul_peak_gflops": peaks, "threads": args.threads, "rows": [asdict(row) for row in rows]},
                indent=1,
                default=str,
            )
        )


if __name__ == "__main__":
    main()
