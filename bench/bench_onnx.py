"""onnxruntime against PyTorch on this CPU: images per second, peak memory and the largest output difference.

Each model is exported once with ``restore export``'s library function (verified as usual); then
every (model, size, runtime) row runs in a fresh Python process, so its peak resident memory
(``ru_maxrss``) is that row's alone. "work MiB" is the peak minus the footprint just before the
timed runs (runtime, model and input loaded). Both runtimes run the bare network on one seeded random
``size x size`` image (no engine, no tiling) with the same thread count (PyTorch's, which
``OMP_NUM_THREADS`` sets); PyTorch as restorecli runs it (``inference_mode``, channels-last for the
architectures that prefer it). "max |diff|" compares the two outputs of the same input, in [0, 1].

    python bench/bench_onnx.py                                     # shipped defaults + NAFNet-w32, 512 and 1024
    python bench/bench_onnx.py --models nafnet:tiny --sizes 64 --repeats 1   # quick check

A model is a zoo name (``restorecli-denoise``) or ``ARCH:CONFIG`` (seeded random weights, e.g.
``nafnet:sidd-width32``: speed and memory do not depend on the weights' values).
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
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported late, in the rows that need it
    from restorecli.zoo.descriptor import ModelDescriptor

DEFAULT_MODELS = ("restorecli-derain", "restorecli-deblur", "restorecli-denoise", "nafnet:sidd-width32")
RUNTIMES = ("pytorch", "onnxruntime")


def _rss_mib() -> float:
    """Current resident memory of this process (Linux /proc), in MiB."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mib() -> float:
    """Peak resident memory of this process so far, in MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load(model: str) -> ModelDescriptor:
    """A zoo entry, or ``arch:config`` with seeded random weights."""
    import torch

    from restorecli.zoo import architectures
    from restorecli.zoo.loader import describe, load_descriptor

    if ":" not in model:
        return load_descriptor(model, progress=False)
    arch, config = model.split(":", 1)
    module = architectures.build_model(arch, config).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)
    return describe(module, model, arch, architectures.resolve_config(arch, config))


def child(args: argparse.Namespace) -> None:
    """One row: time ``--repeats`` forwards of one runtime, write the stats and the output."""
    import numpy as np
    import torch

    generator = torch.Generator().manual_seed(0)
    descriptor = load(args.model) if args.runtime == "pytorch" else None
    channels = descriptor.in_channels if descriptor else 3
    x = torch.rand(1, channels, args.size, args.size, generator=generator)
    if args.runtime == "pytorch":
        module = descriptor.module
        if descriptor.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def forward() -> np.ndarray:
            with torch.inference_mode():
                return module(x).float().contiguous().numpy()
    else:
        from restorecli.export.onnx_session import INPUT_NAME, OUTPUT_NAME, new_session

        session = new_session(args.onnx)
        pixels = x.numpy()

        def forward() -> np.ndarray:
            return session.run([OUTPUT_NAME], {INPUT_NAME: pixels})[0]

    before = _rss_mib()
    output = forward()  # warm-up: allocator arenas, kernel choice
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        output = forward()
        seconds.append(time.perf_counter() - start)
    np.save(args.output, output)
    best = min(seconds)
    stats = {
        "seconds": best,
        "images_per_s": 1 / best,
        "peak_mib": _peak_mib(),
        "work_mib": _peak_mib() - before,
        "threads": torch.get_num_threads(),
    }
    Path(args.stats).write_text(json.dumps(stats))


def run_row(model: str, onnx: Path, size: int, runtime: str, repeats: int, folder: Path) -> dict:
    """Run one row in a fresh interpreter; its stats and the path of its output."""
    stats, output = folder / f"{runtime}-{size}.json", folder / f"{runtime}-{size}.npy"
    command = [
        sys.executable,
        __file__,
        "--child",
        "--model",
        model,
        "--onnx",
        str(onnx),
        "--size",
        str(size),
        "--runtime",
        runtime,
        "--repeats",
        str(repeats),
        "--stats",
        str(stats),
        "--output",
        str(output),
    ]
    subprocess.run(command, check=True)
    return {**json.loads(stats.read_text()), "output": output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="Comma-separated zoo names or arch:config.")
    parser.add_argument("--sizes", default="512,1024", help="Comma-separated square input sides.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed forwards per row (the fastest counts).")
    parser.add_argument("--json", type=Path, help="Also write the rows as JSON here.")
    for hidden in ("--model", "--onnx", "--runtime", "--stats", "--output"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    import numpy as np

    from restorecli.export.onnx_graph import export_onnx

    rows = []
    print(
        f"{'model':<22} {'size':>5} {'runtime':<12} {'img/s':>8} {'s/img':>8} {'peak MiB':>9} {'work MiB':>9} "
        f"{'max |diff|':>11}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        for model in args.models.split(","):
            onnx = folder / "model.onnx"
            export_onnx(load(model), onnx)
            for size in map(int, args.sizes.split(",")):
                results = {runtime: run_row(model, onnx, size, runtime, args.repeats, folder) for runtime in RUNTIMES}
                difference = float(
                    np.abs(np.load(results["pytorch"]["output"]) - np.load(results["onnxruntime"]["output"])).max()
                )
                for runtime, result in results.items():
                    row = {
                        "model": model,
                        "size": size,
                        "runtime": runtime,
                        "max_difference": difference,
                        **{k: v for k, v in result.items() if k != "output"},
                    }
                    rows.append(row)
                    print(
                        f"{model:<22} {size:>5} {runtime:<12} {row['images_per_s']:>8.3f} {row['seconds']:>8.3f} "
                        f"{row['peak_mib']:>9.0f} {row['work_mib']:>9.0f} {difference:>11.2e}",
                        flush=True,
                    )
    print(f"threads: {rows[0]['threads']} (PyTorch's; onnxruntime uses the same); load average: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2))


if __name__ == "__main__":
    main()
