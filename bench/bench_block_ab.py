"""One streamed Restormer block, this tree's streaming module against a git revision's (or a file), interleaved.

On a shared 2-core machine the speed drifts by several percent within minutes, so two whole runs a few
minutes apart cannot show a lever worth 1-3%. Here both versions of ``restorecli.archs.streaming``
(the revision's file loaded beside this tree's; the rest of the package is this tree's) run the same
block on the same map in one process, alternately, ``--rounds`` times; the medians are compared and
the outputs must agree. Seeded weights: the deraining config with a fixed random state.

    python bench/bench_block_ab.py --base HEAD~1                       # refinement block, 1024x1024 map
    python bench/bench_block_ab.py --base HEAD~1 --level encoder_level2 --rounds 10
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import torch

from restorecli.archs import streaming
from restorecli.engine.allocator import keep_freed_memory
from restorecli.zoo.architectures import build_model

REPOSITORY = Path(__file__).resolve().parents[1]
# Side of the map each level's blocks see in a 1024x1024 image.
LEVEL_SIZES = {"encoder_level1": 1024, "encoder_level2": 512, "encoder_level3": 256, "latent": 128, "refinement": 1024}


def module_at(base: str, folder: Path) -> ModuleType:
    """The streaming module at ``base`` (a file, or a git revision's ``restorecli/archs/streaming.py``),
    imported under another name."""
    if Path(base).is_file():
        source = Path(base).read_text(encoding="utf-8")
    else:
        show = ["git", "-C", str(REPOSITORY), "show", f"{base}:restorecli/archs/streaming.py"]
        source = subprocess.run(show, check=True, capture_output=True, text=True).stdout
    path = folder / "streaming_base.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("streaming_base", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while decorating
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git revision (or a streaming.py file) to compare with")
    parser.add_argument("--level", default="refinement", choices=sorted(LEVEL_SIZES))
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--strip", type=int, default=64)
    parser.add_argument("--piece-width", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None, help="write the times and the difference here")
    args = parser.parse_args(argv)
    keep_freed_memory()  # as the engine runs
    torch.manual_seed(0)
    model = build_model("restormer", "deraining").eval()
    block = getattr(model, args.level)[0]
    size = LEVEL_SIZES[args.level]
    channels = block.attn.qkv.in_channels
    source = torch.randn(1, channels, size, size).contiguous(memory_format=torch.channels_last)
    pieces = max(size // args.piece_width, 1)
    with tempfile.TemporaryDirectory() as folder:
        versions = {"base": module_at(args.base, Path(folder)), "tree": streaming}
        times: dict[str, list[float]] = {name: [] for name in versions}
        outputs: dict[str, torch.Tensor] = {}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for name, module in versions.items():
                    x = source.clone(memory_format=torch.channels_last)
                    plan = module._Plan.for_input(x, args.strip, None, pieces, True, None)
                    started = time.perf_counter()
                    module._restormer_block(block, x, plan)
                    times[name].append(time.perf_counter() - started)
                    outputs[name] = x
    difference = (outputs["base"] - outputs["tree"]).abs().max().item()
    print(
        f"{args.level} block, {size}x{size} map, {args.strip}-row strips in {pieces} pieces; max |diff| {difference:.3g}"
    )
    for name, values in times.items():
        print(f"  {name:5s} median {statistics.median(values):.3f} s  min {min(values):.3f} s  ({len(values)} rounds)")
    if args.json:
        result = {"level": args.level, "base": args.base, "max_difference": difference, "seconds": times}
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
