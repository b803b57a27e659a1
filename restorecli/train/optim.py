"""Optimiser, learning-rate schedule and EMA weights.

The schedule is a picklable callable of plain numbers, so ``LambdaLR.state_dict()`` holds only
numbers and a checkpoint loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from restorecli.train.recipe import OptimSection, ScheduleSection


@dataclass
class WarmupCosine:
    """LR factor at a step: linear warm-up from ~0 to 1, then cosine decay to ``floor``.

    Attributes:
        warmup: warm-up steps (0 = none).
        total: total steps; the factor reaches ``floor`` at ``total``.
        floor: final factor, ``min_lr / lr``.
    """

    warmup: int
    total: int
    floor: float

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        span = max(1, self.total - self.warmup)
        progress = min(1.0, (step - self.warmup) / span)
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(
    model: nn.Module, optim: OptimSection, schedule: ScheduleSection
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over all trainable parameters and its warm-up + cosine scheduler (stepped per iteration)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=optim.lr, betas=optim.betas, weight_decay=optim.weight_decay)
    floor = optim.min_lr / optim.lr if optim.lr > 0 else 0.0
    factor = WarmupCosine(warmup=schedule.warmup, total=schedule.iterations, floor=floor)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class EMA:
    """Exponential moving average of a model's parameters and buffers, kept in float32.

    Restoration models are validated and exported with these averaged weights, which are smoother
    than the last step's (BasicSR's ``params_ema``). The decay ramps up as ``(1 + n) / (10 + n)``
    after ``n`` updates until it reaches ``decay`` (TensorFlow's ``num_updates`` rule), so early
    validation scores the trained weights rather than the random initialisation. Decay 0 makes the
    copy track the model exactly.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.state = {k: _as_float(v.detach().clone()) for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the model's current weights (integer buffers are copied)."""
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                self.state[key].lerp_(value.float(), 1.0 - decay)
            else:
                self.state[key].copy_(value)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights under the model's own state-dict keys (floating tensors in float32)."""
        return self.state

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """Restore the averaged weights and the update count from a checkpoint."""
        self.state = {k: _as_float(v.clone()) for k, v in state.items()}
        self.updates = updates

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (same architecture)."""
        model.load_state_dict(self.state, strict=True)


def _as_float(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.float() if tensor.is_floating_point() else tensor
