"""Restormer (Zamir et al., CVPR 2022): a U-Net of transposed-attention Transformer blocks.

Written for restorecli, state-dict compatible with the official release
(swz30/Restormer, ``basicsr/models/archs/restormer_arch.py``): parameter names, shapes and the
forward computation match, so an official checkpoint loads with ``strict=True``.

The network needs ``H`` and ``W`` divisible by 8 (three 2x down-samplings); like the official
test scripts, the engine reflect-pads bottom/right and crops back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restorecli.archs.ops import Sides, conv_part, is_channels_last
from restorecli.errors import ConfigError

LayerNormType = Literal["WithBias", "BiasFree"]


class _BiasFreeLayerNorm(nn.Module):
    """Scale-only layer norm over the last axis: divides by the std without removing the mean."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        variance = x.var(-1, keepdim=True, unbiased=False)
        return x * torch.rsqrt(variance + 1e-5) * self.weight


class _WithBiasLayerNorm(nn.Module):
    """Standard layer norm over the last axis (eps 1e-5 inside the square root), PyTorch's fused kernel."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class LayerNorm(nn.Module):
    """Channel layer norm of an ``(N, C, H, W)`` map, applied per pixel on its ``(N, H, W, C)`` view.

    The official code flattens to ``(N, HW, C)`` and back (two copies of the map); a permuted view
    is free for channels-last maps and lets the norm reduce over contiguous channels.
    The parameters live under ``body`` (official key ``norm1.body.weight``).
    """

    def __init__(self, dim: int, layer_norm_type: LayerNormType) -> None:
        super().__init__()
        self.body = _BiasFreeLayerNorm(dim) if layer_norm_type == "BiasFree" else _WithBiasLayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN): GELU-gated depth-wise conv branch."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, kernel_size=1, bias=bias)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, kernel_size=3, padding=1, groups=hidden * 2, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.project_out(self.gated(x))

    def gated(self, x: Tensor, edges: Sides | None = None) -> Tensor:
        """``gelu(x1) * x2`` over the halves of ``dwconv(project_in(x))``, each its own map (``edges``: see
        :func:`~restorecli.archs.ops.conv_part`).

        The gate half is finished before the value half starts, so its temporaries are freed first.
        """
        gate = F.gelu(conv_part(self.dwconv, conv_part(self.project_in, x, 0, 2), 0, 2, edges))
        value = conv_part(self.dwconv, conv_part(self.project_in, x, 1, 2), 1, 2, edges)
        return gate * value


class Attention(nn.Module):
    """Multi-Dconv head transposed attention (MDTA): attention across channels, not pixels.

    The ``(C/heads) x (C/heads)`` attention map per head makes the cost linear in ``H*W``;
    ``temperature`` (shape ``(heads, 1, 1)``) is a learned per-head scale.
    """

    def __init__(self, dim: int, num_heads: int, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        """The official computation, regrouped so a channels-last map is never copied.

        Official: ``q, k`` L2-normalised along the pixels, ``A = softmax(q k^T * t)`` per head, then
        ``project_out(A v)``. Here the cosine similarities come from ``q^T k`` divided by the norms
        (no normalised copies), and ``A`` is folded into ``project_out``'s weight, so the pixels
        meet one ``(HW x C) @ (C x C)`` product instead of two (the same value up to rounding).
        """
        # q, k, v as three maps, (N, HW, C) views of channels-last ones: contiguous rows for the products.
        query, key, value = (pixels(self.qkv_part(x, index)) for index in range(3))
        # vecdot reduces over the pixel axis several times faster than norm does.
        query_squares = torch.linalg.vecdot(query, query, dim=1)
        key_squares = torch.linalg.vecdot(key, key, dim=1)
        mixing = self.mixing(head_grams(query, key, self.num_heads), query_squares, key_squares)
        return self.project(value, mixing, x.shape[-2])

    def qkv_part(self, x: Tensor, index: int, edges: Sides | None = None) -> Tensor:
        """Map ``index`` (0 q, 1 k, 2 v) of ``qkv_dwconv(qkv(x))``, ``(N, C, H, W)``, computed on its own
        (``edges``: see :func:`~restorecli.archs.ops.conv_part`)."""
        return conv_part(self.qkv_dwconv, conv_part(self.qkv, x, index, 3), index, 3, edges)

    def mixing(self, grams: Tensor, query_squares: Tensor, key_squares: Tensor) -> Tensor:
        """The ``(N, C, C)`` matrix ``M`` with ``project_out(A v) = v @ M`` per pixel (bias aside).

        Args:
            grams: each head's ``q_h^T k_h`` summed over the pixels, ``(N, heads, C/heads, C/heads)``.
            query_squares / key_squares: each channel's squared L2 norm over the pixels, ``(N, C)``.

        Only sums over pixels come in, so they may be accumulated over parts of the image
        (:mod:`restorecli.archs.streaming`).
        """
        batch, channels = query_squares.shape
        heads = self.num_heads
        per_head = channels // heads
        query_norm = query_squares.sqrt().clamp_min(1e-12).view(batch, heads, per_head, 1)  # F.normalize's eps
        key_norm = key_squares.sqrt().clamp_min(1e-12).view(batch, heads, 1, per_head)
        cosine = grams / (query_norm * key_norm)  # (N, heads, C/heads, C/heads)
        attention = (cosine * self.temperature).softmax(dim=-1)
        # project_out(A v) per pixel = v @ M with M = blocks A_h^T W_h^T stacked over heads.
        weight = self.project_out.weight.reshape(channels, heads, per_head).permute(1, 2, 0)
        return (attention.transpose(2, 3) @ weight).reshape(batch, channels, channels)

    def project(self, value: Tensor, mixing: Tensor, height: int) -> Tensor:
        """``project_out(A v)`` from ``(N, HW, C)`` values and :meth:`mixing`: an ``(N, C, H, W)`` map."""
        batch, pixel_count, channels = value.shape
        out = value @ mixing
        if self.project_out.bias is not None:
            out = out + self.project_out.bias
        return out.reshape(batch, height, pixel_count // height, channels).permute(0, 3, 1, 2)


def pixels(x: Tensor) -> Tensor:
    """An ``(N, C, H, W)`` map as ``(N, HW, C)`` rows of pixels: a view when ``x`` is channels-last."""
    batch, channels, height, width = x.shape
    return x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)


def head_grams(query: Tensor, key: Tensor, heads: int) -> Tensor:
    """Each head's ``q_h^T k_h``: ``(N, HW, C)`` maps in, ``(N, heads, C/heads, C/heads)`` out.

    fp32 products read the per-head views directly. Reduced-precision CPU products copy such views
    first (several times slower: ``bench/bench_performance.py --levers``), so there every channel pair goes
    through one ``(C x HW)(HW x C)`` product and each head keeps its diagonal block: ``heads`` times
    the multiply-adds of a small product, which fp32 would pay for nothing.
    """
    batch, _, channels = query.shape
    per_head = channels // heads
    # An ONNX graph takes the per-head products in any dtype: the exporter's ``diagonal`` adds a
    # float32-only branch that ONNX Runtime rejects in an fp16 graph.
    if not torch.onnx.is_in_onnx_export() and (heads == 1 or query.dtype != torch.float32):
        gram = torch.bmm(query.transpose(1, 2), key).view(batch, heads, per_head, heads, per_head)
        return gram.diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)
    query = query.unflatten(2, (heads, per_head)).transpose(1, 2)  # (N, heads, HW, C/heads)
    key = key.unflatten(2, (heads, per_head)).transpose(1, 2)
    return query.transpose(2, 3) @ key


def pixel_squares(rows: Tensor) -> Tensor:
    """Each channel's sum of squares over the pixels: ``(N, HW, C)`` rows in, ``(N, C)`` out.

    A product with a row of ones reduces over the pixel axis about twice as fast on the CPU as
    ``vecdot``'s strided sum (the streamed forward's attention norms). The whole forward keeps
    ``vecdot``, which the ONNX export translates.
    """
    ones = rows.new_ones(rows.shape[0], 1, rows.shape[1])
    return torch.bmm(ones, rows * rows).squeeze(1)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + MDTA(LN(x))`` then ``x + GDFN(LN(x))``."""

    def __init__(
        self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool, layer_norm_type: LayerNormType
    ) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim, layer_norm_type)
        self.attn = Attention(dim, num_heads, bias)
        self.norm2 = LayerNorm(dim, layer_norm_type)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """3x3 convolution from image to features (official key ``patch_embed.proj``)."""

    def __init__(self, in_channels: int, embed_dim: int, bias: bool = False) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=3, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halve the resolution, double the channels: conv to ``C/2``, then pixel-unshuffle by 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels // 2, kernel_size=3, padding=1, bias=False), nn.PixelUnshuffle(2)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution, halve the channels: conv to ``2C``, then pixel-shuffle by 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels * 2, kernel_size=3, padding=1, bias=False), nn.PixelShuffle(2)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class Restormer(nn.Module):
    """Restormer, ``(N, C, H, W)`` in and out with ``H, W`` multiples of 8.

    Argument names follow the official constructor so released configs apply unchanged.

    Args:
        inp_channels: input channels (3 RGB, 1 grey, 6 for a dual-pixel left/right pair).
        out_channels: output channels.
        dim: channels at level 1; levels 2-4 use ``2x``, ``4x``, ``8x``.
        num_blocks: Transformer blocks per level 1-4 (level 4 is the latent stage); decoders
            reuse the counts of levels 1-3.
        num_refinement_blocks: blocks after the decoder, at full resolution.
        heads: attention heads per level 1-4.
        ffn_expansion_factor: GDFN hidden width is ``int(dim * factor)``.
        bias: whether convolutions have biases.
        LayerNorm_type: ``"WithBias"`` (most tasks) or ``"BiasFree"`` (denoising releases).
        dual_pixel_task: dual-pixel defocus deblurring: the output gets a skip from the level-1
            features instead of the input image (which has 6 channels, not 3).
    """

    def __init__(
        self,
        inp_channels: int = 3,
        out_channels: int = 3,
        dim: int = 48,
        num_blocks: Sequence[int] = (4, 6, 6, 8),
        num_refinement_blocks: int = 4,
        heads: Sequence[int] = (1, 2, 4, 8),
        ffn_expansion_factor: float = 2.66,
        bias: bool = False,
        LayerNorm_type: LayerNormType = "WithBias",  # the official argument name (not snake_case)
        dual_pixel_task: bool = False,
    ) -> None:
        super().__init__()
        if len(num_blocks) != 4 or len(heads) != 4:
            raise ConfigError(
                f"Expected 4 levels in num_blocks and heads, but got {len(num_blocks)} and {len(heads)} (Restormer)"
            )
        if LayerNorm_type not in ("WithBias", "BiasFree"):
            raise ConfigError(f"Expected LayerNorm_type 'WithBias' or 'BiasFree', but got {LayerNorm_type!r}")
        if not dual_pixel_task and inp_channels != out_channels:
            raise ConfigError(
                f"Expected out_channels == inp_channels ({inp_channels}) for the image residual, "
                f"but got {out_channels} (Restormer without dual_pixel_task)"
            )

        def stage(level: int, count: int, heads_index: int) -> nn.Sequential:
            width = dim * 2**level
            return nn.Sequential(
                *(
                    TransformerBlock(width, heads[heads_index], ffn_expansion_factor, bias, LayerNorm_type)
                    for _ in range(count)
                )
            )

        self.patch_embed = OverlapPatchEmbed(inp_channels, dim)
        self.encoder_level1 = stage(0, num_blocks[0], 0)
        self.down1_2 = Downsample(dim)
        self.encoder_level2 = stage(1, num_blocks[1], 1)
        self.down2_3 = Downsample(dim * 2)
        self.encoder_level3 = stage(2, num_blocks[2], 2)
        self.down3_4 = Downsample(dim * 4)
        self.latent = stage(3, num_blocks[3], 3)
        self.up4_3 = Upsample(dim * 8)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, kernel_size=1, bias=bias)
        self.decoder_level3 = stage(2, num_blocks[2], 2)
        self.up3_2 = Upsample(dim * 4)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, kernel_size=1, bias=bias)
        self.decoder_level2 = stage(1, num_blocks[1], 1)
        # Level 1 keeps the concatenated 2*dim channels (no reduction), with level-1 head count.
        self.up2_1 = Upsample(dim * 2)
        self.decoder_level1 = stage(1, num_blocks[0], 0)
        self.refinement = stage(1, num_refinement_blocks, 0)
        self.dual_pixel_task = dual_pixel_task
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=bias)
        self.output = nn.Conv2d(dim * 2, out_channels, kernel_size=3, padding=1, bias=bias)

    def forward(self, inp_img: Tensor) -> Tensor:
        # Shuffles and concatenations return standard-layout maps: keep the input's memory format.
        layout = torch.channels_last if is_channels_last(inp_img) else torch.contiguous_format

        def keep(x: Tensor) -> Tensor:
            return x.contiguous(memory_format=layout)

        embedded = self.patch_embed(inp_img)
        enc1 = self.encoder_level1(embedded)
        enc2 = self.encoder_level2(keep(self.down1_2(enc1)))
        enc3 = self.encoder_level3(keep(self.down2_3(enc2)))
        latent = self.latent(keep(self.down3_4(enc3)))
        dec3 = self.decoder_level3(self.reduce_chan_level3(keep(torch.cat([self.up4_3(latent), enc3], 1))))
        dec2 = self.decoder_level2(self.reduce_chan_level2(keep(torch.cat([self.up3_2(dec3), enc2], 1))))
        dec1 = self.refinement(self.decoder_level1(keep(torch.cat([self.up2_1(dec2), enc1], 1))))
        if self.dual_pixel_task:
            return self.output(dec1 + self.skip_conv(embedded))
        return self.output(dec1) + inp_img
