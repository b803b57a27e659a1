"""What the official code computes in the modules whose restorecli forward regroups it.

restorecli's forwards compute the official outputs with other products where that is faster
(:mod:`restorecli.archs.restormer`, :mod:`restorecli.archs.nafnet`). A MAC count of our forward is
then the count of restorecli's arithmetic, not of the architecture. For each regrouped module type,
:data:`OFFICIAL_COSTS` gives the official formulation's MACs per operator from the module's weights
and its input shape, so :func:`restorecli.profiling.count_macs_three_ways` can report the
architecture's own count without running (or shipping) the official code. The test suite proves the
equality against ``torch.utils.flop_counter`` on the official formulation
(:mod:`restorecli.testing.official`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import cast

from torch import nn

from restorecli.archs.nafnet import NAFBlock
from restorecli.archs.restormer import Attention

Ops = dict[str, int]
Shape = tuple[int, ...]
# (module, the (N, C, H, W) input of each call, MACs per operator our forward spent in all of them)
# -> the official formulation's MACs per operator for those calls.
OfficialCost = Callable[[nn.Module, Sequence[Shape], Mapping[str, int]], Ops]

CONVOLUTION = "convolution"
MATRIX_PRODUCT = "bmm"


def _conv_macs(conv: nn.Conv2d, pixels: int) -> int:
    """MACs of a stride-1, same-size convolution over ``pixels`` outputs: one per weight per pixel."""
    return pixels * conv.weight.numel()


def _mdta(module: nn.Module, shapes: Sequence[Shape], measured: Mapping[str, int]) -> Ops:
    """Official MDTA: ``qkv`` and its depth-wise conv, ``q @ k^T`` and ``attn @ v`` per head, ``project_out``.

    Each head's products are ``(C/h x HW)(HW x C/h)`` and ``(C/h x C/h)(C/h x HW)``. restorecli
    folds ``attn`` into ``project_out``'s weight instead (one ``(HW x C)(C x C)`` product), which
    changes both the operator mix and the total.
    """
    attention = cast(Attention, module)
    heads = attention.num_heads
    per_head = attention.project_out.in_channels // heads
    pixels = sum(batch * height * width for batch, _, height, width in shapes)
    convs = (attention.qkv, attention.qkv_dwconv, attention.project_out)
    return {
        CONVOLUTION: sum(_conv_macs(conv, pixels) for conv in convs),
        MATRIX_PRODUCT: 2 * heads * per_head**2 * pixels,
    }


def _nafblock(module: nn.Module, shapes: Sequence[Shape], measured: Mapping[str, int]) -> Ops:
    """Official NAFBlock: every product is a convolution.

    On a channels-last map restorecli runs ``conv3`` and ``conv5`` as batched products with their
    scales folded into the weights: the same multiply-adds under another operator.
    """
    return {CONVOLUTION: sum(measured.values())} if measured else {}


OFFICIAL_COSTS: dict[type[nn.Module], OfficialCost] = {Attention: _mdta, NAFBlock: _nafblock}


def official_cost(module: nn.Module) -> OfficialCost | None:
    """The official-cost rule for ``module``'s type, or None when our forward is the official one."""
    return OFFICIAL_COSTS.get(type(module))
