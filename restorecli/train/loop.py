"""The training loop: one recipe in, a run folder of checkpoints, a log and exported weights out.

Run folder (``output.dir``)::

    recipe.json            the resolved recipe of the latest session
    log.jsonl              one JSON object per start, grow (the tensors a grown network starts fresh),
                           log interval, validation, checkpoint, stop or export
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
from typing import Any, Literal, TextIO

import numpy as np
import torch

from restorecli.engine.device import resolve_device
from restorecli.errors import ConfigError
from restorecli.images import remove_abandoned_temporaries
from restorecli.train import checkpoint as ckpt
from restorecli.train.data import (
    ValidationItem,
    build_loader,
    build_train_dataset,
    build_validation_set,
    describe_data,
    resolve_path,
)
from restorecli.train.export import ExportResult, export_run
from restorecli.train.recipe import Recipe, recipe_to_dict
from restorecli.train.trainer import Trainer
from restorecli.train.validate import ValidationScores

LOG_NAME = "log.jsonl"
RECIPE_NAME = "recipe.json"

StopReason = Literal["interrupted", "time limit"]


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


class _Session:
    """One call of :func:`train`: the bookkeeping around the steps (log, progress, checkpoints)."""

    def __init__(self, recipe: Recipe, trainer: Trainer, run_dir: Path, log: TextIO, progress: bool) -> None:
        from tqdm import tqdm

        self.recipe = recipe
        self.trainer = trainer
        self.run_dir = run_dir
        self.handle = log
        self.first_iteration = trainer.iteration
        self.wall_before = trainer.wall_time_s
        self.started = time.perf_counter()
        self.saved: Path | None = None
        self.losses: list[float] = []
        self.bar = tqdm(
            total=recipe.schedule.iterations,
            initial=trainer.iteration,
            disable=not progress,
            unit="it",
            dynamic_ncols=True,
        )

    @property
    def elapsed(self) -> float:
        """Seconds since this session started."""
        return time.perf_counter() - self.started

    def log(self, kind: str, **fields: Any) -> None:
        """Append one JSON line, flushed so a crash keeps what was written."""
        self.handle.write(json.dumps({"kind": kind, "time": round(time.time(), 3), **fields}) + "\n")
        self.handle.flush()

    def save(self) -> Path:
        """Checkpoint the trainer now (wall time included)."""
        self.trainer.wall_time_s = self.wall_before + self.elapsed
        self.saved = ckpt.save_checkpoint(
            self.run_dir, self.trainer.iteration, self.trainer.state_dict(), self.recipe.output.keep
        )
        self.log("checkpoint", iteration=self.trainer.iteration, path=str(self.saved))
        return self.saved

    def after_step(self, loss: float, val_items: list[ValidationItem]) -> None:
        """Progress bar, then the log line, validation and checkpoint that fall due at this iteration."""
        recipe, trainer = self.recipe, self.trainer
        iteration, total = trainer.iteration, recipe.schedule.iterations
        stage = recipe.stage_at(iteration - 1)
        self.losses.append(loss)
        postfix = {"loss": f"{loss:.4g}", "lr": f"{trainer.lr:.2e}", "patch": stage.patch}
        if trainer.val is not None:
            postfix["val_psnr"] = f"{trainer.val.psnr:.2f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)
        last = iteration == total
        if iteration % recipe.output.log_every == 0 or last:
            self.log(
                "train",
                iteration=iteration,
                loss=float(np.mean(self.losses)),
                lr=trainer.lr,
                patch=stage.patch,
                batch=stage.batch,
                seconds_per_iteration=self.elapsed / (iteration - self.first_iteration),
            )
            self.losses.clear()
        validation = recipe.validation
        if validation is not None and (iteration % validation.every == 0 or last):
            try:
                scores = trainer.validate(val_items, validation)
            except Exception:
                self.save()  # the steps since the last checkpoint survive a failing validation
                raise
            self.log("val", iteration=iteration, **asdict(scores))
        if iteration % recipe.output.checkpoint_every == 0 or last:
            self.save()

    def stop(self, reason: StopReason) -> None:
        """Checkpoint the current iteration (unless that was just done) and log why the session stops."""
        if self.saved != ckpt.checkpoint_path(self.run_dir, self.trainer.iteration):
            self.save()
        self.log("stop", iteration=self.trainer.iteration, reason=reason)


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
    run_dir = resolve_path(recipe.output.dir)
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is not None and not resume:
        raise ConfigError(f"Expected an output folder without checkpoints (or --resume), but found {latest}")
    trainer = Trainer(recipe, resolve_device(recipe.runtime.device))
    dataset = build_train_dataset(recipe, trainer.channels)
    trainer.data = describe_data(recipe, dataset)
    val_items = build_validation_set(recipe.validation, recipe, trainer.channels) if recipe.validation else []
    if latest is not None:
        trainer.load_state_dict(ckpt.load_checkpoint(latest), latest)
    # A kill while a checkpoint was written leaves a checkpoint-sized temporary file beside it.
    later = range(trainer.iteration + 1, recipe.schedule.iterations + 1)
    remove_abandoned_temporaries(ckpt.checkpoint_path(run_dir, iteration) for iteration in later)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RECIPE_NAME).write_text(json.dumps(recipe_to_dict(recipe), indent=2) + "\n", encoding="utf-8")

    total = recipe.schedule.iterations
    stopped: StopReason | None = None
    with (run_dir / LOG_NAME).open("a", encoding="utf-8") as handle:
        session = _Session(recipe, trainer, run_dir, handle, progress)
        session.log(
            "start", iteration=trainer.iteration, resumed_from=latest and str(latest), device=str(trainer.device)
        )
        if latest is None and trainer.fresh_tensors:
            session.log("grow", weights=recipe.model.weights, fresh=trainer.fresh_tensors)
        with _deferred_interrupt() as stop:
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
                    session.after_step(loss, val_items)
                    if time_limit_s is not None and session.elapsed > time_limit_s and trainer.iteration < total:
                        stopped = "time limit"
                        break
            except KeyboardInterrupt:
                if in_step:
                    # A second Ctrl-C landed inside a step: its half-applied update must not be saved.
                    session.log("stop", iteration=trainer.iteration, reason="aborted inside a step; not saved")
                    raise
                stopped = "interrupted"
            finally:
                session.bar.close()
            if stopped is not None:
                session.stop(stopped)
        # Outside the deferred-interrupt block: Ctrl-C during the export stops it at once (writes are atomic).
        export = export_run(run_dir) if trainer.iteration >= total else None
        if export is not None:
            session.log(
                "export", weights=str(export.weights), card=str(export.card), val=export.card_data.to_dict()["val"]
            )
    steps = trainer.iteration - session.first_iteration
    return TrainResult(
        run_dir=run_dir,
        iteration=trainer.iteration,
        stopped=stopped,
        checkpoint=session.saved,
        export=export,
        val=trainer.val,
        seconds_per_iteration=session.elapsed / steps if steps else None,
    )
