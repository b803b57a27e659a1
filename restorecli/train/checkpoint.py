"""Training checkpoints that resume exactly and load without unpickling code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, written with
``torch.save`` and read with ``torch.load(weights_only=True)``: model, optimiser, scheduler, EMA,
the Python/NumPy/torch random states, the iteration (which fixes the data sampler's position, see
:mod:`restorecli.train.data`), accumulated wall time and the resolved recipe.
Files are ``<run>/checkpoints/iter_<N>.pt``, written atomically; the newest ``keep`` are kept.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from restorecli.errors import CheckpointError
from restorecli.images import atomic_path

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^iter_(\d+)\.pt$")


def checkpoint_path(run_dir: Path, iteration: int) -> Path:
    """Where the checkpoint taken after ``iteration`` completed steps lives."""
    return Path(run_dir) / CHECKPOINT_DIR / f"iter_{iteration:07d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of every checkpoint in a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint with the highest iteration, or None when the run has none."""
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def save_checkpoint(run_dir: Path, iteration: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``state`` for ``iteration`` atomically and delete all but the newest ``keep`` checkpoints."""
    path = checkpoint_path(run_dir, iteration)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, durable=True) as temporary:
        torch.save(state, temporary)
    for _, old in list_checkpoints(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint on the CPU, refusing pickled code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"Expected a checkpoint of plain tensors and numbers, but got pickled objects ({path})"
        ) from exc
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"Expected a readable training checkpoint, but reading failed: {exc} ({path})") from exc
    required = {"iteration", "model", "ema", "optimizer", "scheduler", "rng", "recipe"}
    if not isinstance(state, dict) or not required <= set(state):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"Expected a restorecli training checkpoint with {sorted(required)}, but got {found} ({path})"
        )
    return state


def capture_rng() -> dict[str, Any]:
    """Python, NumPy (legacy global) and torch CPU/CUDA random states as plain data."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
