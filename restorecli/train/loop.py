"""The training loop: one recipe in, a run folder of checkpoints, a log and exported weights out.

Run folder (``output.dir``)::

    recipe.json            the resolved recipe of the latest session
    log.jsonl              one JSON object per log interval, validation, checkpoint, stop or export
    checkpoints/iter_N.pt  resumable state (see restorecli.train.checkpoint)
    <name>.safetensors     EMA weights, written when the run completes (restorecli.train.export)
    <name>.json            the model card beside them

Ctrl-C asks the loop to stop after the current step (a second Ctrl-C aborts at once); the loop then
writes a checkpoint, so ``--resume`` continues exactly where it stopped.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from restorecli.engine.device import resolve_device
from restorecli.errors import ConfigError
from restorecli.train import checkpoint as ckpt
from restorecli.train.data import build_loader, build_train_dataset, build_validation_set, describe_data, resolve_path
from restorecli.train.export import ExportResult, export_run
from restorecli.train.recipe import Recipe, recipe_to_dict
from restorecli.train.trainer import Trainer
from restorecli.train.validate import ValidationScores

LOG_NAME = "log.jsonl"
RECIPE_NAME = "recipe.json"

StopReason = str


@dataclass(frozen=True)
class TrainResult:
    """What a training session did.

    Attributes:
        run_dir: the run folder.
        iteration: completed iterations (over all sessions).
        stopped: why an incomplete session ended: ``"interrupted"`` (Ctrl-C) or ``"time limit"``;
            None when the schedule was completed.
        checkpoint: the last checkpoint written, if any.
        export: the exported weights and card, when the schedule was completed.
        val: the last validation scores, if any.
        seconds_per_iteration: this session's wall time per iteration, data loading and validation
            included (None when no step ran).
    """

    run_dir: Path
    iteration: int
    stopped: StopReason | None
    checkpoint: Path | None
    export: ExportResult | None
    val: ValidationScores | None
    seconds_per_iteration: float | None


class _StopRequest:
    """Turns the first SIGINT into a flag checked between steps; the second one raises as usual."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextmanager
def _deferred_interrupt() -> Iterator[_StopRequest]:
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request  # signal handlers can only be installed from the main thread
        return
    previous = signal.signal(signal.SIGINT, request)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)


class _Log:
    """Appends JSON lines to the run's log, flushed per line so a crash keeps what was written."""

    def __init__(self, handle: TextIO) -> None:
        self.handle = handle

    def write(self, kind: str, **fields: Any) -> None:
        self.handle.write(json.dumps({"kind": kind, "time": round(time.time(), 3), **fields}) + "\n")
        self.handle.flush()


def train(
    recipe: Recipe, *, resume: bool = False, progress: bool = True, time_limit_s: float | None = None
) -> TrainResult:
    """Train (or continue) the run described by ``recipe``, then export it when the schedule completes.

    Args:
        recipe: the resolved recipe.
        resume: continue from the latest checkpoint in ``output.dir`` (a fresh start when there is
            none). Without it, an output folder that already holds checkpoints is an error.
        progress: show a tqdm bar with loss, learning rate and the last validation PSNR.
        time_limit_s: stop with a checkpoint after the first step that ends past this many seconds
            of this session, so a long run can be continued in a later session.
    """
    threads = torch.get_num_threads()
    if recipe.runtime.threads:
        torch.set_num_threads(recipe.runtime.threads)
    try:
        return _train(recipe, resume, progress, time_limit_s)
    finally:
        torch.set_num_threads(threads)


def _train(recipe: Recipe, resume: bool, progress: bool, time_limit_s: float | None) -> TrainResult:
    from tqdm import tqdm

    run_dir = resolve_path(recipe.output.dir)
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise ConfigError(f"Expected an output folder without checkpoints (or --resume), but found {latest}")
    trainer = Trainer(recipe, resolve_device(recipe.runtime.device))
    dataset = build_train_dataset(recipe, trainer.channels)
    trainer.data = describe_data(recipe, dataset)
    validation = recipe.validation
    val_items = build_validation_set(validation, recipe, trainer.channels) if validation else []
    if latest is not None:
        trainer.load_state_dict(ckpt.load_checkpoint(latest), latest)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RECIPE_NAME).write_text(json.dumps(recipe_to_dict(recipe), indent=2) + "\n", encoding="utf-8")

    total = recipe.schedule.iterations
    first_iteration = trainer.iteration
    session_start = time.perf_counter()
    wall_before = trainer.wall_time_s
    stopped: StopReason | None = None
    saved: Path | None = None
    losses: list[float] = []

    def save() -> Path:
        trainer.wall_time_s = wall_before + time.perf_counter() - session_start
        path = ckpt.save_checkpoint(run_dir, trainer.iteration, trainer.state_dict(), recipe.output.keep)
        log.write("checkpoint", iteration=trainer.iteration, path=str(path))
        return path

    with (run_dir / LOG_NAME).open("a", encoding="utf-8") as handle, _deferred_interrupt() as stop:
        log = _Log(handle)
        log.write("start", iteration=trainer.iteration, resumed_from=str(latest) if latest else None,
                  device=str(trainer.device))
        bar = tqdm(total=total, initial=trainer.iteration, disable=not progress, unit="it", dynamic_ncols=True)
        in_step = False
        try:
            batches = iter(build_loader(dataset, recipe, trainer.iteration))
            while trainer.iteration < total:
                if stop.requested:
                    raise KeyboardInterrupt
                degraded, clean = next(batches)
                in_step = True
                loss = trainer.step(degraded, clean)
                in_step = False
                iteration = trainer.iteration
                stage = recipe.stage_at(iteration - 1)
                losses.append(loss)
                bar.update(1)
                postfix = {"loss": f"{loss:.4g}", "lr": f"{trainer.lr:.2e}", "patch": stage.patch}
                if trainer.val is not None:
                    postfix["val_psnr"] = f"{trainer.val.psnr:.2f}"
                bar.set_postfix(postfix, refresh=False)
                if iteration % recipe.output.log_every == 0 or iteration == total:
                    elapsed = time.perf_counter() - session_start
                    log.write("train", iteration=iteration, loss=float(np.mean(losses)), lr=trainer.lr,
                              patch=stage.patch, batch=stage.batch,
                              seconds_per_iteration=elapsed / (iteration - first_iteration))
                    losses.clear()
                if validation and (iteration % validation.every == 0 or iteration == total):
                    log.write("val", iteration=iteration, **asdict(trainer.validate(val_items, validation)))
                if iteration % recipe.output.checkpoint_every == 0 or iteration == total:
                    saved = save()
                if time_limit_s is not None and time.perf_counter() - session_start > time_limit_s and iteration < total:
                    stopped = "time limit"
                    break
        except KeyboardInterrupt:
            if in_step:
                # A second Ctrl-C landed inside a step: its half-applied update must not be saved.
                log.write("stop", iteration=trainer.iteration, reason="aborted inside a step; not saved")
                raise
            stopped = "interrupted"
        finally:
            bar.close()
        if stopped is not None:
            if saved is None or saved != ckpt.checkpoint_path(run_dir, trainer.iteration):
                saved = save()
            log.write("stop", iteration=trainer.iteration, reason=stopped)
        export = None
        if trainer.iteration >= total:
            export = export_run(run_dir)
            log.write("export", weights=str(export.weights), card=str(export.card), val=export.card_data["val"])
    steps = trainer.iteration - first_iteration
    return TrainResult(
        run_dir=run_dir,
        iteration=trainer.iteration,
        stopped=stopped,
        checkpoint=saved,
        export=export,
        val=trainer.val,
        seconds_per_iteration=(time.perf_counter() - session_start) / steps if steps else None,
    )
