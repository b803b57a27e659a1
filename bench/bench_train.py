"""Seconds per training step and peak memory of a recipe, fp32 against bf16 autocast.

Training time is what the shipped defaults are short of on a 2-core CPU, and stage 7 of the deblur
default trains in bf16 autocast because of this measurement. Each precision runs in a fresh process
(so its peak resident memory, ``VmHWM``, is its own) with the same initial weights and the same
batches (the recipe's seed): a few warm-up steps, then timed calls of ``Trainer.step`` (forward,
loss, backward, clipping, AdamW, EMA). Reading the batch is timed apart. The mean loss of the timed
steps shows whether bf16 trains like fp32 on the same data.

    python bench/bench_train.py                                  # recipes/deblur-stage7.toml, 5 + 40 steps
    python bench/bench_train.py recipes/denoise.toml --steps 20 --set data.patch=128
    python bench/bench_train.py --json bench/results/train.json

The recipe's ``model.weights`` are used when the file exists (a fresh clone lacks ``runs/``); otherwise
the network starts from its seeded initialisation, which times the same.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_RECIPE = "recipes/deblur-stage7.toml"


def measure(args: argparse.Namespace) -> dict[str, object]:
    """Time ``args.steps`` training steps in this process at ``args.child`` precision."""
    import torch

    from restorecli.engine.device import resolve_device
    from restorecli.profiling.runtime import resident_bytes
    from restorecli.train.data import build_loader, build_train_dataset
    from restorecli.train.recipe import load_recipe
    from restorecli.train.trainer import Trainer

    recipe = load_recipe(args.recipe, [*args.set, f'runtime.precision="{args.child}"'])
    weights = recipe.model.weights
    if weights is not None and not Path(weights).is_file():
        recipe = dataclasses.replace(recipe, model=dataclasses.replace(recipe.model, weights=None, grow=False))
    torch.set_num_threads(args.threads or recipe.runtime.threads or os.cpu_count() or 1)
    trainer = Trainer(recipe, resolve_device(recipe.runtime.device))
    batches = iter(build_loader(build_train_dataset(recipe, trainer.channels), recipe, 0))
    data_s, step_s, losses = [], [], []
    for index in range(args.warmup + args.steps):
        start = time.perf_counter()
        degraded, clean = next(batches)
        loaded = time.perf_counter()
        loss = trainer.step(degraded, clean)
        done = time.perf_counter()
        if index >= args.warmup:
            data_s.append(loaded - start)
            step_s.append(done - loaded)
            losses.append(loss)
    stage = recipe.stage_at(0)
    return {
        "precision": args.child,
        "patch": stage.patch,
        "batch": stage.batch,
        "threads": torch.get_num_threads(),
        "weights": str(recipe.model.weights) if recipe.model.weights else "initialisation",
        "step_s_median": statistics.median(step_s),
        "data_s_mean": statistics.fmean(data_s),
        "mean_loss": statistics.fmean(losses),
        "peak_mib": resident_bytes()[1] / 2**20,
    }


def run_child(args: argparse.Namespace, precision: str) -> dict[str, object]:
    """One precision in a fresh interpreter; its last stdout line is the JSON result."""
    command = [sys.executable, __file__, args.recipe, "--child", precision, "--steps", str(args.steps)]
    command += ["--warmup", str(args.warmup), "--threads", str(args.threads)]
    for override in args.set:
        command += ["--set", override]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        raise SystemExit(f"{precision} run failed (exit {done.returncode}): {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", default=DEFAULT_RECIPE, help="Recipe file (TOML).")
    parser.add_argument("--steps", type=int, default=40, help="Timed steps per precision.")
    parser.add_argument("--warmup", type=int, default=5, help="Untimed steps first (allocator, kernel choice).")
    parser.add_argument("--threads", type=int, default=0, help="Torch threads (0: the recipe's, else one per core).")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--set", action="append", default=[], help="Recipe override key.sub=value (repeatable).")
    parser.add_argument("--json", type=Path, help="Also write the rows here.")
    parser.add_argument("--child", choices=["fp32", "bf16"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return
    rows = [run_child(args, precision) for precision in args.precisions]
    first = rows[0]
    print(
        f"{args.recipe}: patch {first['patch']}, batch {first['batch']}, threads {first['threads']}, "
        f"weights: {first['weights']}; {args.warmup} warm-up + {args.steps} timed steps per row"
    )
    print(f"{'precision':<10}{'s/step':>9}{'speed-up':>10}{'data s':>9}{'mean loss':>11}{'peak MiB':>10}")
    for row in rows:
        speedup = float(first["step_s_median"]) / float(row["step_s_median"])
        print(
            f"{row['precision']:<10}{row['step_s_median']:>9.3f}{speedup:>9.2f}x{row['data_s_mean']:>9.3f}"
            f"{row['mean_loss']:>11.5f}{row['peak_mib']:>10.0f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
