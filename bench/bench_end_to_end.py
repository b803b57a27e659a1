"""Issue 24's end-to-end check: an official ``test.py``-like run against ``restore derain``, process for process.

Both sides start a fresh Python, load the same seeded Restormer checkpoint (saved as the official
releases are, ``{"params": state_dict}``), read the same PNG, restore it and write a PNG:

- ``official``: what the official deraining ``test.py`` does on the CPU: read, to float, reflect-pad
  to a multiple of 8, the official formulation (``restorecli.testing.official``) under
  ``torch.no_grad``, crop, clamp, round, write;
- ``restore``: ``restore derain IN_FOLDER OUT_FOLDER --model CHECKPOINT --quiet``, the command a
  user types.

Columns: wall seconds of the whole process (start-up, loading and I/O included), its peak resident
memory (``ru_maxrss`` of the child), and the PSNR of restore's PNG against the official PNG.

    python bench/bench_end_to_end.py                 # 1024x1024, Restormer deraining (about 4 min, 2 cores)
    python bench/bench_end_to_end.py --size 512 --json out.json
    python bench/bench_end_to_end.py --short         # tiny Restormer, 64x64 (seconds; the tests run it)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# bench/ is this script's folder, first on sys.path when it runs.
from bench_performance import photo_like

# The official side, run as its own script: nothing of restorecli's engine, only the official formulation.
OFFICIAL_SCRIPT = """
import sys
import numpy as np, torch, torch.nn.functional as F
from PIL import Image
from restorecli.testing.official import OfficialForward
from restorecli.zoo.architectures import build_model
model = build_model("restormer", sys.argv[1])
model.load_state_dict(torch.load(sys.argv[2], weights_only=True)["params"])
model = OfficialForward(model.eval())
image = np.asarray(Image.open(sys.argv[3]).convert("RGB"), dtype=np.float32) / 255.0
x = torch.from_numpy(image).permute(2, 0, 1)[None]
height, width = x.shape[-2:]
x = F.pad(x, (0, (8 - width % 8) % 8, 0, (8 - height % 8) % 8), "reflect")
with torch.no_grad():
    restored = model(x)[..., :height, :width].clamp(0, 1)
pixels = (restored[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
Image.fromarray(pixels).save(sys.argv[4])
"""


def timed(command: list[str], log: Path) -> tuple[float, float]:
    """Run ``command`` to its end (its output into ``log``): wall seconds and the child's peak resident MiB."""
    started = time.perf_counter()
    with log.open("w") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{log.read_text()}")
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = usage.ru_maxrss / 2**20 if sys.platform == "darwin" else usage.ru_maxrss / 2**10
    return seconds, peak


def prepare(folder: Path, config: str, size: int) -> tuple[Path, Path]:
    """A seeded checkpoint in the official layout and a photo-like PNG of ``size`` x ``size``."""
    import torch
    from PIL import Image

    from restorecli.zoo.architectures import build_model

    torch.manual_seed(0)
    checkpoint = folder / "restormer-seeded.pth"
    torch.save({"params": build_model("restormer", config).state_dict()}, checkpoint)
    image = photo_like(size, size).transpose(1, 2, 0)  # bench_performance's test image, (H, W, 3)
    (folder / "in").mkdir()
    Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / "in" / "photo.png")
    return checkpoint, folder / "in" / "photo.png"


def psnr_8bit(first: Path, second: Path) -> float:
    from PIL import Image

    a, b = (np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) for path in (first, second))
    mse = float(np.mean((a - b) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024, help="side of the square test image")
    parser.add_argument("--config", default="deraining", help="Restormer config of the seeded checkpoint")
    parser.add_argument("--short", action="store_true", help="tiny Restormer on 64x64: seconds")
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args(argv)
    if args.short:
        args.size, args.config = 64, "tiny"
    restore = shutil.which("restore") or str(Path(sys.executable).with_name("restore"))
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        checkpoint, image = prepare(folder, args.config, args.size)
        official_png = folder / "official.png"
        script = [sys.executable, "-c", OFFICIAL_SCRIPT, args.config, str(checkpoint), str(image), str(official_png)]
        official = timed(script, folder / "official.log")
        command = [restore, "derain", str(image.parent), str(folder / "out"), "--model", str(checkpoint), "--quiet"]
        ours = timed(command, folder / "restore.log")
        difference = psnr_8bit(official_png, folder / "out" / "photo.png")
    result = {
        "size": args.size,
        "config": args.config,
        "official": {"seconds": round(official[0], 2), "peak_mib": round(official[1], 1)},
        "restore": {"seconds": round(ours[0], 2), "peak_mib": round(ours[1], 1)},
        "speedup": official[0] / ours[0],
        "memory_ratio": ours[1] / official[1],
        "psnr_db": difference,
    }
    print(f"Restormer {args.config}, {args.size}x{args.size} PNG, whole processes, {os.cpu_count()} CPUs")
    for side in ("official", "restore"):
        print(f"  {side:9s} {result[side]['seconds']:8.2f} s  {result[side]['peak_mib']:9.1f} MiB peak")
    print(f"  speed-up {result['speedup']:.2f}x, memory {result['memory_ratio']:.3f}, PSNR {difference:.2f} dB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
