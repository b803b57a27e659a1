"""Pad an image bottom/right to a size multiple and crop it back, as the official test scripts do.

Restormer reflect-pads to a multiple of 8 and NAFNet zero-pads to a multiple of 16 (the rule comes
from the ModelDescriptor). ``torch.nn.functional.pad`` in reflect mode needs the pad to be smaller
than the side; tiny images (say 3 pixels tall, padded to 8) instead get *repeated* reflection: the
image is mirrored back and forth without repeating its edge row, exactly what ``numpy.pad(...,
mode="reflect")`` does. A side of one pixel has nothing to mirror and is replicated.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

PadMode = Literal["reflect", "constant"]


def round_up(size: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is at least ``size``."""
    return -(-size // multiple) * multiple


def _reflect_indices(size: int, padded: int, device: torch.device) -> Tensor:
    """Source index of each of ``padded`` positions when a side of ``size`` is mirror-extended.

    The reflection of a side of n pixels (edge not repeated) is periodic with period 2(n - 1).
    """
    positions = torch.arange(padded, device=device)
    if size == 1:
        return torch.zeros_like(positions)
    period = 2 * (size - 1)
    folded = positions % period
    return torch.where(folded < size, folded, period - folded)


def _repeated_reflect(x: Tensor, pad_bottom: int, pad_right: int) -> Tensor:
    """Reflect-pad ``(N, C, H, W)`` bottom/right by amounts that may exceed the side."""
    height, width = x.shape[-2:]
    rows = _reflect_indices(height, height + pad_bottom, x.device)
    cols = _reflect_indices(width, width + pad_right, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def pad_to_multiple(x: Tensor, multiple: int, mode: PadMode) -> Tensor:
    """Pad ``(N, C, H, W)`` at the bottom and right so both sides are multiples of ``multiple``.

    ``mode`` is ``"reflect"`` (mirror without repeating the edge) or ``"constant"`` (zeros).
    Returns ``x`` itself when no padding is needed; crop the result back with :func:`crop`.
    """
    height, width = x.shape[-2:]
    pad_bottom = round_up(height, multiple) - height
    pad_right = round_up(width, multiple) - width
    if pad_bottom == 0 and pad_right == 0:
        return x
    if mode == "constant":
        return F.pad(x, (0, pad_right, 0, pad_bottom), mode="constant", value=0.0)
    if pad_bottom < height and pad_right < width:
        return F.pad(x, (0, pad_right, 0, pad_bottom), mode="reflect")
    return _repeated_reflect(x, pad_bottom, pad_right)


def crop(x: Tensor, height: int, width: int) -> Tensor:
    """Undo :func:`pad_to_multiple`: keep the top-left ``height`` x ``width`` of ``(N, C, H, W)``."""
    return x[..., :height, :width]
