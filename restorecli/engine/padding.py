"""Pad an image bottom/right to the size a model takes and crop it back, as the official test scripts do.

Restormer reflect-pads to a multiple of 8 and NAFNet zero-pads to a multiple of 16; some networks
also need a minimum side or a square input (the rule comes from the ModelDescriptor, see
:func:`padded_size`). ``torch.nn.functional.pad`` in reflect mode needs the pad to be smaller than
the side; tiny images (say 3 pixels tall, padded to 8) instead get *repeated* reflection: the image
is mirrored back and forth without repeating its edge row, exactly what ``numpy.pad(...,
mode="reflect")`` does. A side of one pixel has nothing to mirror and is replicated.

``reflect-replicate`` is spandrel's rule (``spandrel.__helpers.size_req.pad_tensor``), kept for the
models it loads so their outputs equal spandrel's: reflect by at most the side minus one, then
replicate the last row/column for the rest.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

PadMode = Literal["reflect", "constant", "reflect-replicate"]


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


def padded_size(height: int, width: int, multiple: int, minimum: int = 0, square: bool = False) -> tuple[int, int]:
    """The input size a model takes for a ``height`` x ``width`` image: each side at least ``minimum``,
    then rounded up to ``multiple``, then both the longer one when ``square`` (spandrel's order)."""
    padded_height = round_up(max(height, minimum), multiple)
    padded_width = round_up(max(width, minimum), multiple)
    if square:
        padded_height = padded_width = max(padded_height, padded_width)
    return padded_height, padded_width


def pad_to(x: Tensor, height: int, width: int, mode: PadMode) -> Tensor:
    """Pad ``(N, C, H, W)`` at the bottom and right to ``height`` x ``width`` (each at least the input's).

    ``mode``: ``"reflect"`` (mirror without repeating the edge, repeatedly past the side),
    ``"constant"`` (zeros) or ``"reflect-replicate"`` (spandrel's). Returns ``x`` itself when no
    padding is needed; crop the result back with :func:`crop`.
    """
    pad_bottom = height - x.shape[-2]
    pad_right = width - x.shape[-1]
    if pad_bottom == 0 and pad_right == 0:
        return x
    if mode == "constant":
        return F.pad(x, (0, pad_right, 0, pad_bottom), mode="constant", value=0.0)
    if mode == "reflect-replicate":
        reflect_bottom = min(pad_bottom, x.shape[-2] - 1)
        reflect_right = min(pad_right, x.shape[-1] - 1)
        x = F.pad(x, (0, reflect_right, 0, reflect_bottom), mode="reflect")
        return F.pad(x, (0, pad_right - reflect_right, 0, pad_bottom - reflect_bottom), mode="replicate")
    if pad_bottom < x.shape[-2] and pad_right < x.shape[-1]:
        return F.pad(x, (0, pad_right, 0, pad_bottom), mode="reflect")
    return _repeated_reflect(x, pad_bottom, pad_right)


def pad_to_multiple(x: Tensor, multiple: int, mode: PadMode) -> Tensor:
    """Pad ``(N, C, H, W)`` at the bottom and right so both sides are multiples of ``multiple`` (see :func:`pad_to`)."""
    return pad_to(x, *padded_size(x.shape[-2], x.shape[-1], multiple), mode)


def crop(x: Tensor, height: int, width: int) -> Tensor:
    """Undo :func:`pad_to`: keep the top-left ``height`` x ``width`` of ``(N, C, H, W)``."""
    return x[..., :height, :width]
