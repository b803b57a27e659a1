"""The official forward passes, written out as the releases compute them, over our modules' weights.

Our :mod:`~restorecli.archs.restormer` and :mod:`~restorecli.archs.nafnet` regroup the official
computation for speed (fused layer norms on channels-last views, attention folded into its output
projection, no normalised copies). This module keeps the unoptimised formulation of
swz30/Restormer ``restormer_arch.py`` and megvii-research/NAFNet ``NAFNet_arch.py``: ``to_3d``
flattening and ``var``-based norms, ``F.normalize``d queries and keys, ``attn @ v`` then
``project_out``, and NAFNet's seven-step channel LayerNorm. It serves two jobs:

- the tests compare our forwards with it (equal to float rounding, both memory layouts);
- ``bench/bench_performance.py`` times it as the reference "official test.py" path.

It reads the parameters of our modules, so both sides always use the same weights.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from restorecli.archs.nafnet import LayerNorm2d, NAFBlock, NAFNet
from restorecli.archs.restormer import Attention, FeedForward, LayerNorm, Restormer


def restormer_layer_norm(norm: LayerNorm, x: Tensor) -> Tensor:
    """Official ``LayerNorm``: flatten to ``(N, HW, C)`` (``to_3d``), normalise, fold back (``to_4d``)."""
    batch, channels, height, width = x.shape
    tokens = x.reshape(batch, channels, height * width).transpose(1, 2)
    sigma = tokens.var(-1, keepdim=True, unbiased=False)
    if hasattr(norm.body, "bias"):  # WithBias_LayerNorm
        mu = tokens.mean(-1, keepdim=True)
        tokens = (tokens - mu) / torch.sqrt(sigma + 1e-5) * norm.body.weight + norm.body.bias
    else:  # BiasFree_LayerNorm: the mean is not removed from the numerator
        tokens = tokens / torch.sqrt(sigma + 1e-5) * norm.body.weight
    return tokens.transpose(1, 2).reshape(batch, channels, height, width)


def restormer_attention(attn: Attention, x: Tensor) -> Tensor:
    """Official MDTA: normalised q and k, ``softmax(q k^T * temperature) @ v``, then ``project_out``."""
    batch, channels, height, width = x.shape
    heads = attn.num_heads
    q, k, v = attn.qkv_dwconv(attn.qkv(x)).chunk(3, dim=1)
    q, k, v = (t.reshape(batch, heads, channels // heads, height * width) for t in (q, k, v))
    q = F.normalize(q, dim=-1)
    k = F.normalize(k, dim=-1)
    scores = (q @ k.transpose(-2, -1)) * attn.temperature
    out = (scores.softmax(dim=-1) @ v).reshape(batch, channels, height, width)
    return attn.project_out(out)


def restormer_feed_forward(ffn: FeedForward, x: Tensor) -> Tensor:
    """Official GDFN: ``project_out(gelu(x1) * x2)`` with ``x1, x2`` the halves of the depth-wise branch."""
    x1, x2 = ffn.dwconv(ffn.project_in(x)).chunk(2, dim=1)
    return ffn.project_out(F.gelu(x1) * x2)


def _restormer_stage(stage: nn.Module, x: Tensor) -> Tensor:
    for block in stage.children():
        x = x + restormer_attention(block.attn, restormer_layer_norm(block.norm1, x))
        x = x + restormer_feed_forward(block.ffn, restormer_layer_norm(block.norm2, x))
    return x


def restormer_forward(model: Restormer, inp_img: Tensor) -> Tensor:
    """Official ``Restormer.forward`` on ``model``'s parameters, in the standard (NCHW) layout."""
    inp_enc_level1 = model.patch_embed.proj(inp_img)
    out_enc_level1 = _restormer_stage(model.encoder_level1, inp_enc_level1)
    out_enc_level2 = _restormer_stage(model.encoder_level2, model.down1_2(out_enc_level1))
    out_enc_level3 = _restormer_stage(model.encoder_level3, model.down2_3(out_enc_level2))
    latent = _restormer_stage(model.latent, model.down3_4(out_enc_level3))
    inp_dec_level3 = model.reduce_chan_level3(torch.cat([model.up4_3(latent), out_enc_level3], 1))
    out_dec_level3 = _restormer_stage(model.decoder_level3, inp_dec_level3)
    inp_dec_level2 = model.reduce_chan_level2(torch.cat([model.up3_2(out_dec_level3), out_enc_level2], 1))
    out_dec_level2 = _restormer_stage(model.decoder_level2, inp_dec_level2)
    inp_dec_level1 = torch.cat([model.up2_1(out_dec_level2), out_enc_level1], 1)
    out_dec_level1 = _restormer_stage(model.refinement, _restormer_stage(model.decoder_level1, inp_dec_level1))
    if model.dual_pixel_task:
        return model.output(out_dec_level1 + model.skip_conv(inp_enc_level1))
    return model.output(out_dec_level1) + inp_img


def nafnet_layer_norm(norm: LayerNorm2d, x: Tensor) -> Tensor:
    """Official ``LayerNormFunction.forward``: mean and biased variance over channels, step by step."""
    mu = x.mean(1, keepdim=True)
    var = (x - mu).pow(2).mean(1, keepdim=True)
    y = (x - mu) / (var + norm.eps).sqrt()
    return norm.weight.view(1, -1, 1, 1) * y + norm.bias.view(1, -1, 1, 1)


def nafnet_block(block: NAFBlock, inp: Tensor) -> Tensor:
    """Official ``NAFBlock.forward`` (dropout is the identity at inference)."""
    x = block.conv2(block.conv1(nafnet_layer_norm(block.norm1, inp)))
    x1, x2 = x.chunk(2, dim=1)
    x = x1 * x2
    x = block.conv3(x * block.sca(x))
    y = inp + x * block.beta
    x1, x2 = block.conv4(nafnet_layer_norm(block.norm2, y)).chunk(2, dim=1)
    return y + block.conv5(x1 * x2) * block.gamma


def nafnet_forward(model: NAFNet, inp: Tensor) -> Tensor:
    """Official ``NAFNet.forward``: zero-pad to ``padder_size``, U-Net with additive skips, crop back."""
    height, width = inp.shape[-2:]
    inp = F.pad(inp, (0, -width % model.padder_size, 0, -height % model.padder_size))
    x = model.intro(inp)
    skips = []
    for encoder, down in zip(model.encoders, model.downs, strict=True):
        for block in encoder.children():
            x = nafnet_block(block, x)
        skips.append(x)
        x = down(x)
    for block in model.middle_blks.children():
        x = nafnet_block(block, x)
    for decoder, up, skip in zip(model.decoders, model.ups, reversed(skips), strict=True):
        x = up(x) + skip
        for block in decoder.children():
            x = nafnet_block(block, x)
    x = model.ending(x) + inp
    return x[:, :, :height, :width]


class OfficialForward(nn.Module):
    """Wraps a Restormer or NAFNet so calling it runs the official formulation on its weights."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(model, Restormer | NAFNet):
            raise TypeError(f"Expected a Restormer or NAFNet, but got {type(model).__name__}")
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.model, Restormer):
            return restormer_forward(self.model, x)
        return nafnet_forward(self.model, x)
