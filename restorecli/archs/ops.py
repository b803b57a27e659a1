"""Tensor operations shared by the fast forwards of Restormer and NAFNet.

Convolutions by parts: GDFN ends with ``gelu(x1) * x2`` over the two channel halves of one
depth-wise convolution's output, and MDTA splits its ``qkv`` map in three. On a channels-last map
such parts are strided views: element-wise kernels over them run slower than over contiguous
maps, and bf16 matrix products copy them first (``bench/bench_performance.py --levers`` measures it). Computing each part as its own map with the matching weight slices gives
contiguous maps for the same arithmetic; the slices are views of the module's own parameters, so
state dicts and gradients are unchanged. Finishing one part before the next also keeps fewer wide
maps alive at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def is_channels_last(x: Tensor) -> bool:
    """Whether a 4-D map is stored channels-last (and more than one channel makes it differ)."""
    return x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


# Per side of a window, (left, right, top, bottom): 1 where it is the map's edge, 0 where it holds
# neighbouring pixels of the map.
Sides = tuple[int, int, int, int]


def conv_part(conv: nn.Conv2d, x: Tensor, index: int, parts: int, edges: Sides | None = None) -> Tensor:
    """Output channels of part ``index`` of ``parts`` equal parts of a dense or depth-wise ``conv``, as one map.

    A dense convolution (``groups=1``) reads all of ``x``; a depth-wise one (``groups`` equal to
    its channels) takes ``x`` = the matching part of its input. With ``edges`` (a 3x3 ``conv``
    padded by 1 on a window of a larger map), the result drops the row or column at each side where
    ``x`` holds neighbours rather than the map's edge: the window's pixels one in from those sides. A
    window with neighbours all round runs unpadded and its result is a contiguous map (no crop to copy).
    """
    size = conv.out_channels // parts
    part = slice(index * size, (index + 1) * size)
    groups = size if conv.groups == conv.out_channels > 1 else conv.groups
    bias = None if conv.bias is None else conv.bias[part]
    padding = 0 if edges == (0, 0, 0, 0) else conv.padding
    out = F.conv2d(x, conv.weight[part], bias, conv.stride, padding, conv.dilation, groups)
    if edges is None or padding == 0:
        return out
    # Padding a window that meets the edge on some sides costs a zero fill and a copy; a crop costs
    # at most the copy its consumer makes.
    left, right, top, bottom = (1 - edge for edge in edges)
    return out[..., top : out.shape[-2] - bottom, left : out.shape[-1] - right]


# fp32 lanes of an AVX-512 register (two of AVX2's).
_CHANNEL_MULTIPLE = 16


def aligned_channels(channels: int) -> int:
    """Zero channels that round ``channels`` up to a whole number of vector registers.

    oneDNN's convolutions and PyTorch's element-wise CPU kernels run a map of, say, Restormer's 255
    hidden GDFN channels slower than one of 256 (``bench/bench_streaming.py --modes
    streamed,streamed-unaligned``); zero channels with zero weights on both sides add exactly nothing.
    """
    return -channels % _CHANNEL_MULTIPLE
