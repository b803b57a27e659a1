"""Images per second and peak memory of the inference engine, one lever at a time.

Each row runs in a fresh Python process, so its peak resident memory (``ru_maxrss``) belongs to that
row alone; "work MiB" is the peak minus the process's footprint just before the timed runs (torch,
the model, the input). "CPU s/img" is the process's CPU time (all threads) per image: a second view
of the compute levers when a shared machine makes wall-clock time noisy (the I/O overlap shows only
in wall-clock time). Rows:

- ``inference_mode`` vs ``no_grad``: the bare model forward under each context (no engine);
- the engine untiled, contiguous vs channels-last, fp32 vs bf16 autocast;
- tiles of ``--tile`` pixels, 1 vs ``--tile-batch`` tiles per forward pass (and the memory bound);
- ``restore_files`` over ``--images`` PNG files, I/O in turn with compute vs overlapped by 2 threads.

    python bench/bench_inference.py                               # NAFNet lite-w16, 1024x1024 (1 MP)
    python bench/bench_inference.py --size 256 --repeats 1 --images 3   # quick check
    python bench/bench_inference.py --arch restormer --config tiny --size 512

With ``--psnr-images DIR`` it instead reports, per image, the PSNR between tiled and untiled outputs
(how much tiling changes a non-local model such as Restormer), with random weights or ``--model``:

    python bench/bench_inference.py --psnr-images ../shared/data/val/Kodak24 --arch restormer --config tiny
    python bench/bench_inference.py --psnr-images ../shared/data/val/Kodak24 --model restormer-derain --tile 256
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROWS: dict[str, str] = {
    "forward-inference-mode": "model forward, torch.inference_mode",
    "forward-no-grad": "model forward, torch.no_grad",
    "untiled": "engine untiled, fp32, contiguous",
    "channels-last": "engine untiled, fp32, channels_last",
    "bf16": "engine untiled, bf16 autocast",
    "tiles-batch-1": "engine tiles of {tile}, 1 per batch",
    "tiles-batch-n": "engine tiles of {tile}, {tile_batch} per batch",
    "files-io-only": "read + write {images} PNGs, no model",
    "files-serial": "restore_files {images} PNGs, io_threads=0",
    "files-overlap": "restore_files {images} PNGs, io_threads=2",
}


def _rss_mib() -> float:
    """Current resident memory of this process (Linux /proc), in MiB."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_images(folder: Path, count: int, size: int) -> list[Path]:
    """Photo-like RGB PNGs (smooth shapes plus grain), so encoding costs what real images cost."""
    import numpy as np

    from restorecli.images import write_array

    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:size, 0:size] / size
    paths = []
    for index in range(count):
        phase = rng.uniform(0, 2 * np.pi, 3)
        planes = [
            0.5 + 0.35 * np.sin(2 * np.pi * (2 + index) * rows + phase[c]) * np.cos(9 * cols + phase[c])
            for c in range(3)
        ]
        pixels = np.clip(np.stack(planes, axis=2) * 255 + rng.normal(0, 6, (size, size, 3)), 0, 255)
        paths.append(folder / f"{index:03d}.png")
        write_array(paths[-1], pixels.round().astype(np.uint8))
    return paths


def build_descriptor(arch: str, config: str | None):  # type: ignore[no-untyped-def]
    """A ModelDescriptor for ``arch``/``config`` with random weights (speed does not depend on them)."""
    from restorecli.zoo.architectures import build_model, get_arch, resolve_config
    from restorecli.zoo.loader import describe

    spec = get_arch(arch)
    kwargs = resolve_config(spec, config)
    return describe(build_model(spec, kwargs).eval(), f"{arch}:{config or spec.default_config}", arch, kwargs)


def run_row(args: argparse.Namespace) -> dict[str, float]:
    """Measure one row in this process: images per second (median of the timed runs) and memory."""
    import numpy as np
    import torch

    from restorecli.engine.batch import restore_files
    from restorecli.engine.options import RunOptions
    from restorecli.engine.padding import pad_to_multiple
    from restorecli.engine.runner import restore_array, restore_tensor
    from restorecli.images import read_array, write_array

    if args.threads:
        torch.set_num_threads(args.threads)
    descriptor = build_descriptor(args.arch, args.config)
    x = torch.rand(1, descriptor.in_channels, args.size, args.size)
    whole: dict[str, object] = {"tile": args.size, "tile_batch": 1}
    count = 1
    if args.row.startswith("forward-"):
        padded = pad_to_multiple(x, descriptor.pad_multiple, descriptor.pad_mode)
        context = torch.inference_mode if args.row == "forward-inference-mode" else torch.no_grad

        def work(image: torch.Tensor) -> object:
            with context():
                return descriptor.module(image)

        inputs: tuple[object, object] = (padded[..., :64, :64], padded)
    elif args.row.startswith("files-"):
        paths = sorted(Path(args.folder).glob("*.png"))
        count = len(paths)
        threads = 2 if args.row == "files-overlap" else 0
        output = Path(tempfile.mkdtemp(prefix="bench-out-"))

        def work(image: object) -> object:
            if isinstance(image, np.ndarray):  # warm-up through the same engine path
                return restore_array(descriptor, image, RunOptions(**whole))  # type: ignore[arg-type]
            if args.row == "files-io-only":
                return [write_array(output / path.name, read_array(path)) for path in paths]
            return restore_files(
                descriptor,
                paths,
                output,
                RunOptions(**whole),
                progress=False,
                io_threads=threads,  # type: ignore[arg-type]
            )

        inputs = (np.zeros((64, 64, 3), np.uint8), paths)
    else:
        options: dict[str, object] = {
            "untiled": whole,
            "channels-last": {**whole, "channels_last": True},
            "bf16": {**whole, "precision": "bf16"},
            "tiles-batch-1": {"tile": args.tile, "tile_batch": 1},
            "tiles-batch-n": {"tile": args.tile, "tile_batch": args.tile_batch},
        }[args.row]

        def work(image: torch.Tensor) -> object:
            return restore_tensor(descriptor, image, RunOptions(**options))  # type: ignore[arg-type]

        inputs = (x[..., :64, :64], x)
    warm_up, measured = inputs
    work(warm_up)  # lazy initialisation (oneDNN, allocator) outside the timing and the memory baseline
    base = _rss_mib()
    times, cpu_times = [], []
    for _ in range(args.repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        work(measured)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {
        "images_per_second": count / statistics.median(times),
        "cpu_seconds_per_image": statistics.median(cpu_times) / count,
        "peak_mib": _peak_mib(),
        "work_mib": _peak_mib() - base,
    }


def tiling_psnr(args: argparse.Namespace) -> None:
    """Print the PSNR (dB) between tiled and untiled outputs for each image of a folder, and the mean."""
    import numpy as np
    import torch

    from restorecli import load_model
    from restorecli.engine.options import RunOptions
    from restorecli.engine.runner import restore_array
    from restorecli.images import list_images, read_array
    from restorecli.metrics.psnr_ssim import psnr

    if args.threads:
        torch.set_num_threads(args.threads)
    descriptor = load_model(args.model, "cpu") if args.model else build_descriptor(args.arch, args.config)
    paths = list_images(Path(args.psnr_images))[: args.images]
    print(f"{descriptor.name}: tiles of {args.tile} (overlap {args.tile_overlap}) vs untiled, PSNR in dB")
    values = []
    for path in paths:
        image = read_array(path)
        untiled = restore_array(descriptor, image, RunOptions(tile=max(image.shape[:2]) + descriptor.pad_multiple))
        tiled = restore_array(descriptor, image, RunOptions(tile=args.tile, overlap=args.tile_overlap))
        values.append(psnr(tiled, untiled, data_range=np.iinfo(image.dtype).max))
        print(f"{path.name:<24} {values[-1]:7.2f}")
    print(f"{'mean':<24} {float(np.mean(values)):7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="nafnet", help="architecture registry name")
    parser.add_argument("--config", default="lite-w16", help="named config of the architecture")
    parser.add_argument("--size", type=int, default=1024, help="square image side in pixels")
    parser.add_argument("--tile", type=int, default=256, help="tile side for the tiled rows")
    parser.add_argument("--tile-batch", type=int, default=4, help="tiles per batch for the batched row")
    parser.add_argument("--images", type=int, default=3, help="PNG files for the restore_files rows")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per row (after a small warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated subset of: " + ", ".join(ROWS))
    parser.add_argument("--psnr-images", help="folder: report tiled-vs-untiled PSNR instead of speed")
    parser.add_argument("--model", help="zoo name or checkpoint for --psnr-images (default: random weights)")
    parser.add_argument("--tile-overlap", type=int, default=32, help="tile overlap for --psnr-images")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        print(json.dumps(run_row(args)))
        return
    if args.psnr_images:
        tiling_psnr(args)
        return

    with tempfile.TemporaryDirectory(prefix="bench-inference-") as folder:
        make_images(Path(folder), args.images, args.size)
        print(
            f"{args.arch}:{args.config}, {args.size}x{args.size} RGB, {os.cpu_count()} CPU cores, "
            f"torch threads {args.threads or 'default'}, load average {os.getloadavg()[0]:.1f} at start"
        )
        print(f"{'row':<48} {'images/s':>9} {'CPU s/img':>9} {'peak MiB':>9} {'work MiB':>9}")
        seconds: dict[str, float] = {}
        for row in args.rows.split(","):
            command = [sys.executable, __file__, "--row", row, "--folder", folder]
            for flag in ("arch", "config", "size", "tile", "tile_batch", "repeats", "threads"):
                command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{row}: failed\n{done.stderr}", file=sys.stderr)
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            seconds[row] = 1 / result["images_per_second"]
            label = ROWS[row].format(tile=args.tile, tile_batch=args.tile_batch, images=args.images)
            print(
                f"{label:<48} {result['images_per_second']:>9.3f} {result['cpu_seconds_per_image']:>9.3f} "
                f"{result['peak_mib']:>9.0f} {result['work_mib']:>9.0f}"
            )
        print(f"load average {os.getloadavg()[0]:.1f} at end")
        if {"untiled", "files-io-only", "files-serial", "files-overlap"} <= seconds.keys():
            serial, overlapped = seconds["files-serial"], seconds["files-overlap"]
            print(
                f"per image: compute {seconds['untiled']:.2f} s, I/O {seconds['files-io-only']:.2f} s; "
                f"restore_files serial {serial:.2f} s, overlapped {overlapped:.2f} s ({serial / overlapped:.2f}x)"
            )


if __name__ == "__main__":
    main()
