"""SAFMN: spatially-adaptive feature modulation for efficient super-resolution (Sun et al., ICCV 2023).

Written for restorecli, state-dict compatible with the official release (sunny2109/SAFMN,
``basicsr/archs/safmn_arch.py``): parameter names, shapes and the forward computation match, so
an official checkpoint (``params`` of a BasicSR file) loads with ``strict=True``.

Official configurations: the efficient models (``dim=36, n_blocks=8, ffn_scale=2``, x2/x3/x4,
about 228K/233K/240K parameters) and the large "classic SR" / real-world models (``dim=128,
n_blocks=16``).

The multi-scale branch max-pools to ``H // 2**i`` for ``i`` up to 3, so an input must be at least
8 pixels high and wide; the pooled grid depends on the whole image size, so tiles do not reproduce
a whole-image pass exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restorecli.archs.nafnet import LayerNorm2d

# The SAFM layer splits the channels into this many scales (official constant).
SAFM_LEVELS = 4


class SAFM(nn.Module):
    """Spatially-adaptive feature modulation: multi-scale depth-wise features gate the input.

    Channel chunk ``i`` is max-pooled to ``1 / 2**i`` of the size (chunk 0 stays at full size),
    filtered depth-wise, resized back (nearest), then all chunks are mixed by a 1x1 convolution
    whose GELU modulates ``x``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        chunk = dim // SAFM_LEVELS
        self.mfr = nn.ModuleList(
            nn.Conv2d(chunk, chunk, kernel_size=3, padding=1, groups=chunk) for _ in range(SAFM_LEVELS)
        )
        self.aggr = nn.Conv2d(dim, dim, kernel_size=1)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        scales = []
        for level, (part, conv) in enumerate(zip(x.chunk(SAFM_LEVELS, dim=1), self.mfr)):
            if level == 0:
                scales.append(conv(part))
                continue
            factor = 2**level
            if height % factor == 0 and width % factor == 0:
                # Adaptive pooling's windows at a divisible size, in an operator ONNX exports for any size.
                pooled = F.max_pool2d(part, factor)
            else:
                pooled = F.adaptive_max_pool2d(part, (height // factor, width // factor))
            scales.append(F.interpolate(conv(pooled), size=(height, width), mode="nearest"))
        return self.act(self.aggr(torch.cat(scales, dim=1))) * x


class CCM(nn.Module):
    """Convolutional channel mixer: 3x3 expansion, GELU, 1x1 projection (official key ``ccm.ccm``)."""

    def __init__(self, dim: int, growth_rate: float) -> None:
        super().__init__()
        hidden = int(dim * growth_rate)
        self.ccm = nn.Sequential(
            nn.Conv2d(dim, hidden, kernel_size=3, padding=1), nn.GELU(), nn.Conv2d(hidden, dim, kernel_size=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.ccm(x)


class AttBlock(nn.Module):
    """Feature mixing module: pre-norm SAFM and pre-norm CCM, each with a residual connection."""

    def __init__(self, dim: int, ffn_scale: float) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim)
        self.norm2 = LayerNorm2d(dim)
        self.safm = SAFM(dim)
        self.ccm = CCM(dim, ffn_scale)

    def forward(self, x: Tensor) -> Tensor:
        x = self.safm(self.norm1(x)) + x
        return self.ccm(self.norm2(x)) + x


class SAFMN(nn.Module):
    """SAFMN super-resolution network: ``(N, 3, H, W)`` -> ``(N, 3, H * s, W * s)``, ``s = upscaling_factor``.

    Args:
        dim: feature channels (36 efficient, 128 large); a multiple of 4 (the SAFM scales).
        n_blocks: feature mixing modules (8 efficient, 16 large).
        ffn_scale: CCM expansion factor (2.0 in every release).
        upscaling_factor: output scale; the tail is a 3x3 convolution and a pixel shuffle.
    """

    def __init__(self, dim: int = 36, n_blocks: int = 8, ffn_scale: float = 2.0, upscaling_factor: int = 4) -> None:
        super().__init__()
        self.upscaling_factor = upscaling_factor
        self.to_feat = nn.Conv2d(3, dim, kernel_size=3, padding=1)
        self.feats = nn.Sequential(*(AttBlock(dim, ffn_scale) for _ in range(n_blocks)))
        self.to_img = nn.Sequential(
            nn.Conv2d(dim, 3 * upscaling_factor**2, kernel_size=3, padding=1), nn.PixelShuffle(upscaling_factor)
        )

    def forward(self, x: Tensor) -> Tensor:
        features = self.to_feat(x)
        return self.to_img(self.feats(features) + features)
