"""NAFNet (Chen et al., ECCV 2022) and its test-time local converter (TLC, Chu et al., 2022).

Written for restorecli, state-dict compatible with the official release
(megvii-research/NAFNet, ``basicsr/models/archs/NAFNet_arch.py``): parameter names, shapes and the
forward computation match, so an official checkpoint loads with ``strict=True``.

``NAFNetLocal`` swaps every global average pooling of the channel attention for a box filter
whose size comes from the training patch: the GoPro/REDS paper numbers were measured that way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restorecli.archs.ops import is_channels_last
from restorecli.errors import ConfigError

# Sub-sampling factors tried by the fast (approximate) TLC pooling, largest first (official values).
_FAST_REDUCTIONS = (5, 4, 3, 2, 1)


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channel axis of an ``(N, C, H, W)`` tensor.

    Same parameters and maths as the official LayerNorm2d (biased variance, eps inside the square
    root), but computed by the fused ``F.layer_norm`` on a channels-last view: one pass instead of
    seven element-wise ones, about 2-3x faster on the CPU, equal to float rounding (~1e-6).
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        # The normalised shape comes from the weight, not the input: an ONNX trace records input
        # sizes as graph values, and layer_norm needs a constant shape.
        normed = F.layer_norm(x.permute(0, 2, 3, 1), self.weight.shape, self.weight, self.bias, self.eps)
        return normed.permute(0, 3, 1, 2)


class NAFBlock(nn.Module):
    """One NAFNet block: a gated depth-wise conv branch with channel attention, then a gated FFN.

    Args:
        channels: feature channels ``c``; the depth-wise branch works on ``2c`` (DW_Expand 2),
            the FFN on ``2c`` (FFN_Expand 2), both gated back to ``c`` by SimpleGate.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        wide = 2 * channels
        self.conv1 = nn.Conv2d(channels, wide, kernel_size=1)
        self.conv2 = nn.Conv2d(wide, wide, kernel_size=3, padding=1, groups=wide)
        self.conv3 = nn.Conv2d(wide // 2, channels, kernel_size=1)
        # Simplified Channel Attention: index 0 is the pooling TLC replaces, index 1 the 1x1 conv
        # (official key ``sca.1.weight``).
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(wide // 2, wide // 2, kernel_size=1))
        self.conv4 = nn.Conv2d(channels, wide, kernel_size=1)
        self.conv5 = nn.Conv2d(wide // 2, channels, kernel_size=1)
        self.norm1 = LayerNorm2d(channels)
        self.norm2 = LayerNorm2d(channels)
        # Residual scales start at zero, so a fresh block is the identity (official init).
        self.beta = nn.Parameter(torch.zeros((1, channels, 1, 1)))
        self.gamma = nn.Parameter(torch.zeros((1, channels, 1, 1)))

    def forward(self, inp: Tensor) -> Tensor:
        """The official block, with its per-channel scalings folded into the 1x1 convolutions' weights.

        Official: ``y = inp + conv3(x * sca(x)) * beta`` and ``y + conv5(x1 * x2) * gamma``. On a
        channels-last map both become one matrix product with scaled weights, which saves three of
        the block's element-wise passes over the map (see :func:`_scaled_pointwise`).
        """
        x = self.gated(inp)
        return self.finish(inp, x, self.sca(x))

    def gated(self, inp: Tensor) -> Tensor:
        """The depth-wise branch up to its SimpleGate: ``x`` of the official block, ``(N, c, H, W)``."""
        first, second = self.conv2(self.conv1(self.norm1(inp))).chunk(2, dim=1)
        return first * second

    def finish(self, inp: Tensor, x: Tensor, attention: Tensor) -> Tensor:
        """The rest of the block, per pixel, given ``attention = sca(x)`` (``(N, c, 1, 1)``, or per pixel with TLC).

        Separate so the channel attention may come from sums over parts of the image
        (:mod:`restorecli.archs.streaming`).
        """
        y = inp + _scaled_pointwise(self.conv3, x, self.beta, attention)
        first, second = self.conv4(self.norm2(y)).chunk(2, dim=1)
        return y + _scaled_pointwise(self.conv5, first * second, self.gamma)


def _scaled_pointwise(conv: nn.Conv2d, x: Tensor, out_scale: Tensor, in_scale: Tensor | None = None) -> Tensor:
    """``conv(x * in_scale) * out_scale`` for a 1x1 ``conv`` and per-channel scales ``(N|1, C, 1, 1)``.

    On a channels-last ``x`` the scales go into the weight matrix (``out_scale`` on its rows,
    ``in_scale`` per sample on its columns) and the pixels meet one batched product: no scaled copies
    of the map. Other layouts, and TLC's per-pixel ``in_scale``, take the literal route.
    """
    batch, channels, height, width = x.shape
    per_pixel = in_scale is not None and in_scale.shape[-2:] != (1, 1)
    if per_pixel or not is_channels_last(x):
        return conv(x if in_scale is None else x * in_scale) * out_scale
    weight = conv.weight.view(conv.out_channels, channels) * out_scale.view(-1, 1)  # (O, C)
    if in_scale is not None:
        weight = weight * in_scale.view(-1, 1, channels)  # (N, O, C): one matrix per sample
    bias = conv.bias * out_scale.view(-1)
    pixels = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # a view of a channels-last map
    out = torch.baddbmm(bias, pixels, weight.transpose(-2, -1).expand(batch, channels, conv.out_channels))
    return out.view(batch, height, width, conv.out_channels).permute(0, 3, 1, 2)


class NAFNet(nn.Module):
    """NAFNet: a U-Net of NAFBlocks with a global residual, ``(N, C, H, W)`` in and out.

    Any ``H, W`` works: the input is zero-padded bottom/right to a multiple of
    ``2 ** len(enc_blk_nums)`` and the output cropped back, as the official forward does.

    Args:
        img_channel: image channels in and out (3 RGB).
        width: channels at full resolution; doubled at each encoder level.
        middle_blk_num: blocks at the bottleneck.
        enc_blk_nums: blocks per encoder level (one down-sampling after each).
        dec_blk_nums: blocks per decoder level; must have as many levels as ``enc_blk_nums``.
    """

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 16,
        middle_blk_num: int = 1,
        enc_blk_nums: Sequence[int] = (),
        dec_blk_nums: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if len(enc_blk_nums) != len(dec_blk_nums):
            raise ConfigError(
                f"Expected as many decoder levels as encoder levels ({len(enc_blk_nums)}), "
                f"but got {len(dec_blk_nums)} (NAFNet dec_blk_nums)"
            )
        encoders, downs, ups, decoders = [], [], [], []
        channels = width
        for count in enc_blk_nums:
            encoders.append(nn.Sequential(*(NAFBlock(channels) for _ in range(count))))
            downs.append(nn.Conv2d(channels, 2 * channels, kernel_size=2, stride=2))
            channels *= 2
        middle = nn.Sequential(*(NAFBlock(channels) for _ in range(middle_blk_num)))
        for count in dec_blk_nums:
            ups.append(nn.Sequential(nn.Conv2d(channels, 2 * channels, kernel_size=1, bias=False), nn.PixelShuffle(2)))
            channels //= 2
            decoders.append(nn.Sequential(*(NAFBlock(channels) for _ in range(count))))
        # Registered in the official order, so state dicts also list keys in the same order.
        self.intro = nn.Conv2d(img_channel, width, kernel_size=3, padding=1)
        self.ending = nn.Conv2d(width, img_channel, kernel_size=3, padding=1)
        self.encoders = nn.ModuleList(encoders)
        self.decoders = nn.ModuleList(decoders)
        self.middle_blks = middle
        self.ups = nn.ModuleList(ups)
        self.downs = nn.ModuleList(downs)
        self.padder_size = 2 ** len(enc_blk_nums)

    def forward(self, inp: Tensor) -> Tensor:
        height, width = inp.shape[-2:]
        inp = self.pad_input(inp)
        x = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs, strict=True):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips), strict=True):
            x = decoder(up(x) + skip)
        x = self.ending(x) + inp
        return x[:, :, :height, :width]

    def pad_input(self, x: Tensor) -> Tensor:
        """Zero-pad bottom/right so every down-sampling halves the size exactly."""
        pad_h = -x.shape[-2] % self.padder_size
        pad_w = -x.shape[-1] % self.padder_size
        return F.pad(x, (0, pad_w, 0, pad_h))


class LocalAvgPool2d(nn.Module):
    """TLC's replacement for global average pooling: a same-size box-filter mean.

    Where the window covers the whole feature map this is exactly global pooling. Otherwise each
    pixel gets the mean of the ``kernel_size`` window that fits inside the map, and the border
    (where no full window fits) repeats the nearest value. Sums come from an integral image,
    as in the official implementation, so results agree with the released evaluation.

    Args:
        kernel_size: window ``(kh, kw)`` at this feature level.
        fast_imp: the official approximate variant: sub-sample by up to ``max_reduction``,
            box-filter, and upsample (faster, not equivalent).
        max_reduction: largest sub-sampling factor ``(rh, rw)`` the fast variant may use.
    """

    def __init__(
        self, kernel_size: tuple[int, int], fast_imp: bool = False, max_reduction: tuple[int, int] = (5, 5)
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.fast_imp = fast_imp
        self.max_reduction = max_reduction

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, fast_imp={self.fast_imp}"

    def forward(self, x: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export() and not self.fast_imp:
            return self._traceable_means(x)
        height, width = x.shape[-2:]
        kernel_h, kernel_w = self.kernel_size
        if kernel_h >= height and kernel_w >= width:
            return F.adaptive_avg_pool2d(x, 1)
        means = self._fast_means(x) if self.fast_imp else self._exact_means(x)
        rows, cols = height - means.shape[-2], width - means.shape[-1]
        return F.pad(means, (cols // 2, (cols + 1) // 2, rows // 2, (rows + 1) // 2), mode="replicate")

    def _exact_means(self, x: Tensor) -> Tensor:
        """Mean of every full window, shape ``(H - kh + 1, W - kw + 1)``."""
        height, width = x.shape[-2:]
        kernel_h, kernel_w = min(height, self.kernel_size[0]), min(width, self.kernel_size[1])
        integral = F.pad(x.cumsum(dim=-1).cumsum(dim=-2), (1, 0, 1, 0))
        top_left = integral[:, :, :-kernel_h, :-kernel_w]
        top_right = integral[:, :, :-kernel_h, kernel_w:]
        bottom_left = integral[:, :, kernel_h:, :-kernel_w]
        bottom_right = integral[:, :, kernel_h:, kernel_w:]
        return (bottom_right + top_left - top_right - bottom_left) / (kernel_h * kernel_w)

    def _traceable_means(self, x: Tensor) -> Tensor:
        """:meth:`forward` without Python branches on the input size, for an ONNX graph of any size.

        A trace records one branch of ``forward`` (global or local pooling, per the example input);
        here the window is clamped to the map as a graph value, so one integral-image path serves
        every size: a window covering the map gives one mean, replicated to the map (global
        pooling's value, up to float rounding). The exact (not ``fast_imp``) variant only.
        """
        height, width = (torch.as_tensor(size) for size in x.shape[-2:])
        kernel_h = height.clamp(max=self.kernel_size[0])
        kernel_w = width.clamp(max=self.kernel_size[1])
        integral = F.pad(x.cumsum(dim=-1).cumsum(dim=-2), (1, 0, 1, 0))
        sums = (
            integral[:, :, kernel_h:, kernel_w:]
            + integral[:, :, :-kernel_h, :-kernel_w]
            - integral[:, :, :-kernel_h, kernel_w:]
            - integral[:, :, kernel_h:, :-kernel_w]
        )
        rows, cols = kernel_h - 1, kernel_w - 1
        means = sums / (kernel_h * kernel_w)
        return F.pad(means, (cols // 2, (cols + 1) // 2, rows // 2, (rows + 1) // 2), mode="replicate")

    def _fast_means(self, x: Tensor) -> Tensor:
        """The official approximation: window means on a sub-sampled grid, upsampled (nearest)."""
        height, width = x.shape[-2:]
        step_h = min(self.max_reduction[0], next(r for r in _FAST_REDUCTIONS if height % r == 0))
        step_w = min(self.max_reduction[1], next(r for r in _FAST_REDUCTIONS if width % r == 0))
        integral = x[:, :, ::step_h, ::step_w].cumsum(dim=-1).cumsum(dim=-2)
        small_h, small_w = integral.shape[-2:]
        kernel_h = min(small_h - 1, self.kernel_size[0] // step_h)
        kernel_w = min(small_w - 1, self.kernel_size[1] // step_w)
        if kernel_h < 1 or kernel_w < 1:
            raise ConfigError(
                f"Expected a feature map of at least 2x2 after sub-sampling for fast TLC pooling, "
                f"but got {small_h}x{small_w} (NAFNetLocal fast_imp)"
            )
        sums = (
            integral[:, :, :-kernel_h, :-kernel_w]
            - integral[:, :, :-kernel_h, kernel_w:]
            - integral[:, :, kernel_h:, :-kernel_w]
            + integral[:, :, kernel_h:, kernel_w:]
        )
        return F.interpolate(sums / (kernel_h * kernel_w), scale_factor=(step_h, step_w))


class NAFNetLocal(NAFNet):
    """NAFNet with TLC: channel-attention pooling limited to a window sized from the training patch.

    The window at full resolution is ``int(1.5 * train_size)`` (official ``base_size``), scaled to
    each level's feature size during a training-size pass. Inputs up to that size see exactly
    NAFNet's global pooling; larger ones get local statistics like those seen in training. The
    state dict is NAFNet's (pooling has no parameters).

    Args:
        train_size: ``(N, C, H, W)`` of the training patches; only ``H`` and ``W`` matter.
        fast_imp: use the official approximate (faster) pooling.
        Other arguments are NAFNet's.
    """

    def __init__(
        self,
        img_channel: int = 3,
        width: int = 16,
        middle_blk_num: int = 1,
        enc_blk_nums: Sequence[int] = (),
        dec_blk_nums: Sequence[int] = (),
        train_size: Sequence[int] = (1, 3, 256, 256),
        fast_imp: bool = False,
    ) -> None:
        super().__init__(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums)
        if len(train_size) != 4 or min(train_size[-2:]) < 1:
            raise ConfigError(f"Expected train_size (N, C, H, W) with positive H, W, but got {tuple(train_size)}")
        self.train_size = tuple(int(v) for v in train_size)
        self.fast_imp = fast_imp
        levels = len(self.encoders)
        for level, stage in enumerate(self.encoders):
            self._localise(stage, level)
        self._localise(self.middle_blks, levels)
        for index, stage in enumerate(self.decoders):
            self._localise(stage, levels - 1 - index)

    def _localise(self, stage: nn.Module, level: int) -> None:
        """Replace the pooling of every block in ``stage`` (working at ``1 / 2**level`` scale)."""
        train_h, train_w = self.train_size[-2:]
        # The official converter sizes the windows during one forward pass of a training-size
        # input, where each level sees the padded size divided by 2**level.
        feature_h = (train_h + (-train_h % self.padder_size)) >> level
        feature_w = (train_w + (-train_w % self.padder_size)) >> level
        kernel = (feature_h * int(train_h * 1.5) // train_h, feature_w * int(train_w * 1.5) // train_w)
        reduction = (
            max(1, _FAST_REDUCTIONS[0] * feature_h // train_h),
            max(1, _FAST_REDUCTIONS[0] * feature_w // train_w),
        )
        for block in stage.modules():
            if isinstance(block, NAFBlock):
                block.sca[0] = LocalAvgPool2d(kernel, fast_imp=self.fast_imp, max_reduction=reduction)
