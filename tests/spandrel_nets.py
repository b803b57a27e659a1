"""Tiny random-weight networks from spandrel's own architecture code, shared by the spandrel tests.

Import only after checking that spandrel is installed (the tests skip without it).
"""

from __future__ import annotations

import torch
from torch import nn


def tiny_swinir_x2() -> nn.Module:
    """A seeded two-stage SwinIR x2 (window 4, 12 channels): the official layout, small enough for tests."""
    from spandrel.architectures.SwinIR import SwinIR

    torch.manual_seed(0)
    return SwinIR(
        upscale=2,
        in_chans=3,
        img_size=16,
        window_size=4,
        img_range=1.0,
        depths=[2, 2],
        embed_dim=12,
        num_heads=[2, 2],
        mlp_ratio=2,
        upsampler="pixelshuffle",
        resi_connection="1conv",
    )
