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


def conv_part(conv: nn.Conv2d, x: Tensor, index: int, parts: int) -> Tensor:
    """Output channels of part ``index`` of ``parts`` equal parts of a dense or depth-wise ``conv``, as one map.

    A dense convolution (``groups=1``) reads all of ``x``; a depth-wise one (``groups`` equal to
    its channels) takes ``x`` = the matching part of its input.
    """
    size = conv.out_channels // parts
    part = slice(index * size, (index + 1) * size)
    groups = size if conv.groups == conv.out_channels > 1 else conv.groups
    bias = None if conv.bias is None else conv.bias[part]
    return F.conv2d(x, conv.weight[part], bias, conv.stride, conv.padding, conv.dilation, groups)
