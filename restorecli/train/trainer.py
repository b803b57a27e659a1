"""Model, optimiser, schedule and EMA of one run, with exact save/restore of all of it."""

from __future__ import annotations

import copy
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from restorecli.data.degradations import size_factor
from restorecli.engine.device import precision_dtype
from restorecli.engine.options import RunOptions
from restorecli.errors import CheckpointError, ConfigError
from restorecli.train import checkpoint as ckpt
from restorecli.train.data import BatchPlan, ValidationItem, degradations_params
from restorecli.train.losses import build_loss
from restorecli.train.optim import EMA, build_optimizer
from restorecli.train.recipe import Recipe, ValidationSection, recipe_to_dict
from restorecli.train.validate import ValidationScores, validate
from restorecli.zoo.architectures import build_model, get_arch, resolve_config
from restorecli.zoo.loader import build_and_load, describe, read_state_dict


class Trainer:
    """Model, optimiser, schedule and EMA of one run; :meth:`state_dict` captures all of it."""

    def __init__(self, recipe: Recipe, device: torch.device) -> None:
        self.recipe = recipe
        self.device = device
        self.arch = get_arch(recipe.model.arch)
        self.config = resolve_config(self.arch, recipe.model.config)
        self.channels = self.arch.channels(self.config)[0]
        self.scale = self.arch.scale(self.config)
        check_scale(recipe, self.scale)
        self.pad_mode = self.arch.padding(self.config, recipe.model.pad_mode)[1]  # resolved: the card records it
        _seed_all(recipe.seed)
        channels_last = recipe.runtime.channels_last
        if channels_last is None:
            channels_last = self.arch.channels_last
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        model, self.fresh_tensors = self._initial_model(recipe)
        self.model = model.to(device, memory_format=self.memory_format).train()
        self.ema = EMA(self.model, recipe.optim.ema)
        # A copy, not a second build_model: building would draw from the global RNG mid-run.
        self.eval_model = copy.deepcopy(self.model)
        self.optimizer, self.scheduler = build_optimizer(self.model, recipe.optim, recipe.schedule)
        self.loss_fn = build_loss(recipe.loss)
        self.autocast = (
            None if recipe.runtime.precision == "fp32" else precision_dtype(device, recipe.runtime.precision)
        )
        self.data: dict[str, Any] = {}
        self.iteration = 0
        self.wall_time_s = 0.0
        self.val: ValidationScores | None = None

    def _initial_model(self, recipe: Recipe) -> tuple[nn.Module, list[str]]:
        """A fresh network, or one loaded from ``model.weights`` (strict unless ``model.grow``, with a key-level error).

        Also returns the tensors the weights lacked (``model.grow``): they keep their initialisation.
        """
        if recipe.model.weights is None:
            return build_model(self.arch, self.config), []
        state = read_state_dict(Path(recipe.model.weights))
        module, _ = build_and_load(
            self.arch.name, self.config, state, recipe.model.weights, allow_missing=recipe.model.grow
        )
        return module, sorted(set(module.state_dict()) - set(state))

    def step(self, degraded: torch.Tensor, clean: torch.Tensor) -> float:
        """One optimisation step on a batch; returns the loss (the output is ``scale`` times the input)."""
        degraded = degraded.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        clean = clean.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            output = self.model(degraded)
        loss = self.loss_fn(output.float(), clean)
        if not torch.isfinite(loss):
            raise ConfigError(
                f"Expected a finite loss, but got {loss.item()} at iteration {self.iteration + 1}; "
                f"lower optim.lr or set optim.grad_clip"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.recipe.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.recipe.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.model)
        self.iteration += 1
        return float(loss.detach())

    @property
    def lr(self) -> float:
        """Learning rate the next step will use."""
        return float(self.optimizer.param_groups[0]["lr"])

    def ema_model(self) -> nn.Module:
        """The evaluation copy of the network holding the current EMA weights, in eval mode."""
        self.ema.copy_to(self.eval_model)
        return self.eval_model.eval()

    def validate(self, items: list[ValidationItem], section: ValidationSection) -> ValidationScores:
        """Score the EMA weights on the validation items (border crop and Y channel from ``section``)."""
        model = describe(self.ema_model(), self.recipe.name, self.arch.name, self.config, pad_mode=self.pad_mode)
        options = RunOptions(precision=self.recipe.runtime.precision, fallback=False)
        self.val = validate(model, items, options=options, crop_border=section.crop_border, y_channel=section.y_channel)
        return self.val

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit, as tensors and plain data only."""
        return {
            "format": 1,
            "iteration": self.iteration,
            "sample": BatchPlan(1, self.recipe).sample_offset(self.iteration),
            "wall_time_s": self.wall_time_s,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "ema_updates": self.ema.updates,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": ckpt.capture_rng(),
            "recipe": recipe_to_dict(self.recipe),
            "data": self.data,
            "arch": self.arch.name,
            "config": self.config,
            "val": asdict(self.val) if self.val else None,
        }

    def load_state_dict(self, state: dict[str, Any], source: Path) -> None:
        """Restore a checkpoint written by :meth:`state_dict` for the same architecture and config."""
        if state.get("arch") != self.arch.name or state.get("config") != self.config:
            raise CheckpointError(
                f"Expected a checkpoint of {self.arch.name} {self.config}, but it holds "
                f"{state.get('arch')} {state.get('config')} ({source})"
            )
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict({k: v.to(self.device) for k, v in state["ema"].items()}, int(state["ema_updates"]))
        self.optimizer.load_state_dict(state["optimizer"])
        # The schedule's shape comes from the current recipe (a run may be extended); only the
        # step count comes from the checkpoint.
        self.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": [None] * len(self.scheduler.lr_lambdas)})
        self._apply_recipe_optim()
        ckpt.restore_rng(state["rng"])
        self.iteration = int(state["iteration"])
        self.wall_time_s = float(state["wall_time_s"])
        self.val = ValidationScores(**state["val"]) if state.get("val") else None

    def _apply_recipe_optim(self) -> None:
        """The current recipe's optimiser settings over a loaded checkpoint's: a resumed run with
        ``--set optim.lr=...`` (what a non-finite loss asks for) or another weight decay uses them, with
        the learning rate where the schedule stands now. The moment estimates stay the checkpoint's."""
        optim = self.recipe.optim
        for group in self.optimizer.param_groups:
            group.update(betas=tuple(optim.betas), weight_decay=optim.weight_decay, initial_lr=optim.lr)
        self.scheduler.base_lrs = [optim.lr] * len(self.optimizer.param_groups)
        step = self.scheduler.last_epoch
        for group, factor in zip(self.optimizer.param_groups, self.scheduler.lr_lambdas, strict=True):
            group["lr"] = optim.lr * factor(step)


def check_scale(recipe: Recipe, scale: int) -> None:
    """The data must shrink images by the network's scale: a x4 network learns from x4 downscaled patches.

    The recipe check has already matched the validation degradation to the training one; paired
    folders hold same-size pairs, so they only train and validate networks of scale 1.

    Raises:
        ConfigError: the recipe's data does not fit the network's scale.
    """
    data_scale = size_factor(degradations_params(recipe.degradation)) if recipe.degradation and recipe.data.clean else 1
    network = f"{recipe.model.arch} {recipe.model.config or ''}".strip()
    if data_scale != scale:
        raise ConfigError(
            f"Expected training inputs {scale}x smaller than their targets, the scale of {network}, but the data "
            f'gives {data_scale}x (a network of scale N > 1 trains on [degradation] kind = "downscale", '
            "params = { scale = N })"
        )
    if scale > 1 and recipe.validation is not None and recipe.validation.paired:
        raise ConfigError(
            f"Expected validation.clean to validate {network} (output = {scale}x input), but got validation.paired, "
            "whose pairs have one size"
        )


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
