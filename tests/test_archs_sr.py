"""SAFMN and CAMixerSR: official parameter counts, key names, registry entries, and forwards equal to the releases'.

The reference forwards below are literal transcriptions of the official code (sunny2109/SAFMN
``basicsr/archs/safmn_arch.py``, icandle/CAMixerSR ``codes/basicsr/archs/CAMixerSR_arch.py`` and
BasicSR's ``flow_warp``): their own classes, key layout, einops rearranges and index helpers. They
load our modules' state dicts strictly, so equal outputs on random weights show both the key
layout and the computation match.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from restorecli.zoo import architectures, pretrained
from restorecli.zoo.loader import load_descriptor

# ---------------------------------------------------------------------------------------------
# Official SAFMN, transcribed


class RefLayerNorm(nn.Module):
    """Official channels-first LayerNorm (both releases): mean, biased variance, eps 1e-6 inside the root."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + 1e-6)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class RefCCM(nn.Module):
    def __init__(self, dim: int, growth_rate: float) -> None:
        super().__init__()
        hidden_dim = int(dim * growth_rate)
        self.ccm = nn.Sequential(nn.Conv2d(dim, hidden_dim, 3, 1, 1), nn.GELU(), nn.Conv2d(hidden_dim, dim, 1, 1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ccm(x)


class RefSAFM(nn.Module):
    def __init__(self, dim: int, n_levels: int = 4) -> None:
        super().__init__()
        self.n_levels = n_levels
        chunk_dim = dim // n_levels
        self.mfr = nn.ModuleList([nn.Conv2d(chunk_dim, chunk_dim, 3, 1, 1, groups=chunk_dim) for _ in range(n_levels)])
        self.aggr = nn.Conv2d(dim, dim, 1, 1, 0)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.size()[-2:]
        xc = x.chunk(self.n_levels, dim=1)
        out = []
        for i in range(self.n_levels):
            if i > 0:
                p_size = (h // 2**i, w // 2**i)
                s = F.adaptive_max_pool2d(xc[i], p_size)
                s = self.mfr[i](s)
                s = F.interpolate(s, size=(h, w), mode="nearest")
            else:
                s = self.mfr[i](xc[i])
            out.append(s)
        out = self.aggr(torch.cat(out, dim=1))
        return self.act(out) * x


class RefAttBlock(nn.Module):
    def __init__(self, dim: int, ffn_scale: float) -> None:
        super().__init__()
        self.norm1 = RefLayerNorm(dim)
        self.norm2 = RefLayerNorm(dim)
        self.safm = RefSAFM(dim)
        self.ccm = RefCCM(dim, ffn_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.safm(self.norm1(x)) + x
        x = self.ccm(self.norm2(x)) + x
        return x


class RefSAFMN(nn.Module):
    def __init__(self, dim: int, n_blocks: int, ffn_scale: float, upscaling_factor: int) -> None:
        super().__init__()
        self.to_feat = nn.Conv2d(3, dim, 3, 1, 1)
        self.feats = nn.Sequential(*[RefAttBlock(dim, ffn_scale) for _ in range(n_blocks)])
        self.to_img = nn.Sequential(nn.Conv2d(dim, 3 * upscaling_factor**2, 3, 1, 1), nn.PixelShuffle(upscaling_factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.to_feat(x)
        x = self.feats(x) + x
        return self.to_img(x)


# ---------------------------------------------------------------------------------------------
# Official CAMixerSR (inference path), transcribed


def ref_flow_warp(x, flow, interp_mode="bilinear", padding_mode="zeros", align_corners=True):
    _, _, h, w = x.size()
    grid_y, grid_x = torch.meshgrid(torch.arange(0, h).type_as(x), torch.arange(0, w).type_as(x), indexing="ij")
    grid = torch.stack((grid_x, grid_y), 2).float()
    vgrid = grid + flow
    vgrid_x = 2.0 * vgrid[:, :, :, 0] / max(w - 1, 1) - 1.0
    vgrid_y = 2.0 * vgrid[:, :, :, 1] / max(h - 1, 1) - 1.0
    vgrid_scaled = torch.stack((vgrid_x, vgrid_y), dim=3)
    return F.grid_sample(x, vgrid_scaled, mode=interp_mode, padding_mode=padding_mode, align_corners=align_corners)


def batch_index_select(x, idx):
    b, n, c = x.size()
    n_new = idx.size(1)
    offset = torch.arange(b, dtype=torch.long, device=x.device).view(b, 1) * n
    idx = idx + offset
    return x.reshape(b * n, c)[idx.reshape(-1)].reshape(b, n_new, c)


def batch_index_fill(x, x1, x2, idx1, idx2):
    b, n, c = x.size()
    _, n1, _ = x1.size()
    _, n2, _ = x2.size()
    offset = torch.arange(b, dtype=torch.long, device=x.device).view(b, 1)
    idx1 = idx1 + offset * n
    idx2 = idx2 + offset * n
    x = x.reshape(b * n, c)
    x[idx1.reshape(-1)] = x1.reshape(b * n1, c)
    x[idx2.reshape(-1)] = x2.reshape(b * n2, c)
    return x.reshape(b, n, c)


class RefPredictorLG(nn.Module):
    def __init__(self, dim: int, window_size: int = 8, k: int = 4, ratio: float = 0.5) -> None:
        super().__init__()
        self.ratio = ratio
        self.window_size = window_size
        cdim = dim + k
        embed_dim = window_size**2
        self.in_conv = nn.Sequential(nn.Conv2d(cdim, cdim // 4, 1), RefLayerNorm(cdim // 4), nn.LeakyReLU(0.1, True))
        self.out_offsets = nn.Sequential(
            nn.Conv2d(cdim // 4, cdim // 8, 1), nn.LeakyReLU(0.1, True), nn.Conv2d(cdim // 8, 2, 1)
        )
        self.out_mask = nn.Sequential(
            nn.Linear(embed_dim, window_size), nn.LeakyReLU(0.1, True), nn.Linear(window_size, 2), nn.Softmax(dim=-1)
        )
        self.out_CA = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cdim // 4, dim, 1), nn.Sigmoid())
        self.out_SA = nn.Sequential(nn.Conv2d(cdim // 4, 1, 3, 1, 1), nn.Sigmoid())

    def forward(self, input_x):
        x = self.in_conv(input_x)
        offsets = self.out_offsets(x)
        offsets = offsets.tanh().mul(8.0)
        ca = self.out_CA(x)
        sa = self.out_SA(x)
        x = torch.mean(x, keepdim=True, dim=1)
        x = rearrange(x, "b c (h dh) (w dw) -> b (h w) (dh dw c)", dh=self.window_size, dw=self.window_size)
        pred_score = self.out_mask(x)
        mask = F.gumbel_softmax(pred_score, hard=True, dim=2)[:, :, 0:1]
        score = pred_score[:, :, 0]
        _, n = score.shape
        r = torch.mean(mask, dim=(0, 1)) * 1.0
        num_keep_node = n if self.ratio == 1 else min(int(n * r * 2 * self.ratio), n)
        idx = torch.argsort(score, dim=1, descending=True)
        return [idx[:, :num_keep_node], idx[:, num_keep_node:]], offsets, ca, sa


class RefCAMixer(nn.Module):
    def __init__(self, dim: int, window_size: int = 8, bias: bool = True, ratio: float = 0.5) -> None:
        super().__init__()
        self.window_size = window_size
        k, d = 3, 2
        self.project_v = nn.Conv2d(dim, dim, 1, 1, 0, bias=bias)
        self.project_q = nn.Linear(dim, dim, bias=bias)
        self.project_k = nn.Linear(dim, dim, bias=bias)
        self.conv_sptial = nn.Sequential(
            nn.Conv2d(dim, dim, k, padding=k // 2, groups=dim),
            nn.Conv2d(dim, dim, k, stride=1, padding=((k // 2) * d), groups=dim, dilation=d),
        )
        self.project_out = nn.Conv2d(dim, dim, 1, 1, 0, bias=bias)
        self.act = nn.GELU()
        self.route = RefPredictorLG(dim, window_size, ratio=ratio)

    def forward(self, x, condition_global):
        n_, _, h, w = x.shape
        ws = self.window_size
        v = self.project_v(x)
        condition_wind = (
            torch.stack(torch.meshgrid(torch.linspace(-1, 1, ws), torch.linspace(-1, 1, ws), indexing="ij"))
            .type_as(x)
            .unsqueeze(0)
            .repeat(n_, 1, h // ws, w // ws)
        )
        _condition = torch.cat([v, condition_global, condition_wind], dim=1)
        mask, offsets, ca, sa = self.route(_condition)
        q = x
        k = x + ref_flow_warp(x, offsets.permute(0, 2, 3, 1), interp_mode="bilinear", padding_mode="border")
        qk = torch.cat([q, k], dim=1)
        vs = v * sa
        v = rearrange(v, "b c (h dh) (w dw) -> b (h w) (dh dw c)", dh=ws, dw=ws)
        vs = rearrange(vs, "b c (h dh) (w dw) -> b (h w) (dh dw c)", dh=ws, dw=ws)
        qk = rearrange(qk, "b c (h dh) (w dw) -> b (h w) (dh dw c)", dh=ws, dw=ws)
        idx1, idx2 = mask
        _, n_keep = idx1.shape
        v1, v2 = batch_index_select(v, idx1), batch_index_select(vs, idx2)
        qk1 = batch_index_select(qk, idx1)
        v1 = rearrange(v1, "b n (dh dw c) -> (b n) (dh dw) c", n=n_keep, dh=ws, dw=ws)
        qk1 = rearrange(qk1, "b n (dh dw c) -> b (n dh dw) c", n=n_keep, dh=ws, dw=ws)
        q1, k1 = torch.chunk(qk1, 2, dim=2)
        q1 = self.project_q(q1)
        k1 = self.project_k(k1)
        q1 = rearrange(q1, "b (n dh dw) c -> (b n) (dh dw) c", n=n_keep, dh=ws, dw=ws)
        k1 = rearrange(k1, "b (n dh dw) c -> (b n) (dh dw) c", n=n_keep, dh=ws, dw=ws)
        attn = q1 @ k1.transpose(-2, -1)
        attn = attn.softmax(dim=-1)
        f_attn = attn @ v1
        f_attn = rearrange(f_attn, "(b n) (dh dw) c -> b n (dh dw c)", b=n_, n=n_keep, dh=ws, dw=ws)
        attn_out = batch_index_fill(v.clone(), f_attn, v2.clone(), idx1, idx2)
        attn_out = rearrange(attn_out, "b (h w) (dh dw c) -> b (c) (h dh) (w dw)", h=h // ws, w=w // ws, dh=ws, dw=ws)
        out = attn_out
        out = self.act(self.conv_sptial(out)) * ca + out
        return self.project_out(out)


class RefGatedFeedForward(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.project_in = nn.Conv2d(dim, dim * 2, kernel_size=1, bias=False)
        self.dwconv = nn.Conv2d(dim * 2, dim * 2, kernel_size=3, stride=1, padding=1, groups=dim * 2, bias=False)
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.project_in(x)
        x1, x2 = self.dwconv(x).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class RefBlock(nn.Module):
    def __init__(self, n_feats: int, window_size: int, ratio: float) -> None:
        super().__init__()
        self.norm1 = RefLayerNorm(n_feats)
        self.mixer = RefCAMixer(n_feats, window_size=window_size, ratio=ratio)
        self.norm2 = RefLayerNorm(n_feats)
        self.ffn = RefGatedFeedForward(n_feats)

    def forward(self, x, condition_global):
        res = self.mixer(x, condition_global)
        x = self.norm1(x + res)
        res = self.ffn(x)
        return self.norm2(x + res)


class RefGroup(nn.Module):
    def __init__(self, n_feats: int, n_block: int, window_size: int, ratio: float) -> None:
        super().__init__()
        self.body = nn.ModuleList([RefBlock(n_feats, window_size=window_size, ratio=ratio) for _ in range(n_block)])
        self.body_tail = nn.Conv2d(n_feats, n_feats, 1, 1, 0)

    def forward(self, x, condition_global):
        shortcut = x.clone()
        for blk in self.body:
            x = blk(x, condition_global)
        return self.body_tail(x) + shortcut


class RefCAMixerSR(nn.Module):
    def __init__(self, n_block, n_group, n_colors, n_feats, scale, ratio, window_size) -> None:
        super().__init__()
        self.window_sizes = window_size
        self.scale = scale
        self.head = nn.Conv2d(n_colors, n_feats, 3, 1, 1)
        self.global_predictor = nn.Sequential(
            nn.Conv2d(n_feats, 8, 1, 1, 0, bias=True),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
            nn.Conv2d(8, 2, 3, 1, 1, bias=True),
            nn.LeakyReLU(negative_slope=0.1, inplace=True),
        )
        self.body = nn.ModuleList(
            [RefGroup(n_feats, n_block=n_block[i], window_size=window_size, ratio=ratio) for i in range(n_group)]
        )
        self.body_tail = nn.Conv2d(n_feats, n_feats, 3, 1, 1)
        self.tail = nn.Sequential(nn.Conv2d(n_feats, n_colors * (scale**2), 3, 1, 1), nn.PixelShuffle(scale))

    def forward(self, x):
        h, w = x.shape[2:]
        wsize = self.window_sizes
        x = F.pad(x, (0, (wsize - w % wsize) % wsize, 0, (wsize - h % wsize) % wsize), "reflect")
        x = self.head(x)
        condition_global = self.global_predictor(x)
        shortcut = x.clone()
        for blk in self.body:
            x = blk(x, condition_global)
        x = self.body_tail(x)
        x = x + shortcut
        x = self.tail(x)
        return x[:, :, 0 : h * self.scale, 0 : w * self.scale]


# ---------------------------------------------------------------------------------------------
# Helpers


def _randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights everywhere (norm weights around 1), so every branch matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "norm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + 0.2 * noise)
            else:
                parameter.copy_(noise / math.sqrt(max(parameter[0].numel(), 1)))
    return model.eval()


def _pair(arch: str, config: str | dict, **overrides: object) -> tuple[nn.Module, nn.Module]:
    """Our module (random weights) and the transcribed official one holding the same state dict (strict)."""
    kwargs = architectures.resolve_config(arch, config)
    ours = _randomised(architectures.build_model(arch, {**kwargs, **overrides}))
    if arch == "safmn":
        reference: nn.Module = RefSAFMN(
            kwargs["dim"], kwargs["n_blocks"], kwargs["ffn_scale"], kwargs["upscaling_factor"]
        )
    else:
        settings = {**kwargs, **overrides}
        reference = RefCAMixerSR(
            settings["n_block"],
            settings["n_group"],
            settings["n_colors"],
            settings["n_feats"],
            settings["scale"],
            settings["ratio"],
            settings["window_size"],
        )
    reference.load_state_dict(ours.state_dict(), strict=True)
    return ours, reference.eval()


# Our norms use the fused ``F.layer_norm``; the official ones compute mean and variance by hand. The
# difference is float rounding that grows through the blocks (up to ~3e-5 on outputs of magnitude
# ~10 after the 8 blocks of x4, random weights): relative 1e-6, while a real mismatch is O(1).
TOLERANCE = {"rtol": 1e-4, "atol": 5e-5}


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------
# Sizes and keys

# Exact counts of the official configs; the papers round them: SAFMN 228K/233K/240K (x2/x3/x4),
# SAFMN-L 5.56M/5.58M/5.60M; CAMixerSR 746K (x2) and 765K (x4).
PARAMETER_COUNTS = [
    ("safmn", "x2", 227_820),
    ("safmn", "x3", 232_695),
    ("safmn", "x4", 239_520),
    ("safmn", "large-x2", 5_559_308),
    ("safmn", "large-x4", 5_600_816),
    ("camixersr", "x2", 745_846),
    ("camixersr", "x3", 753_961),
    ("camixersr", "x4", 765_322),
]


@pytest.mark.parametrize(("arch", "config", "expected"), PARAMETER_COUNTS)
def test_parameter_counts_match_the_papers(arch: str, config: str, expected: int) -> None:
    assert _count(architectures.build_on_meta(arch, config)) == expected


def test_official_key_names_and_shapes() -> None:
    safmn = {k: tuple(v.shape) for k, v in architectures.build_on_meta("safmn", "x4").state_dict().items()}
    assert len(safmn) == 4 + 8 * 18  # per block: two norms, four mfr and aggr convs, two ccm convs
    assert safmn["to_feat.weight"] == (36, 3, 3, 3)
    assert safmn["feats.7.safm.mfr.3.weight"] == (9, 1, 3, 3)
    assert safmn["feats.0.ccm.ccm.0.weight"] == (72, 36, 3, 3)
    assert safmn["feats.0.ccm.ccm.2.weight"] == (36, 72, 1, 1)
    assert safmn["to_img.0.weight"] == (48, 36, 3, 3)
    camixer = {k: tuple(v.shape) for k, v in architectures.build_on_meta("camixersr", "x4").state_dict().items()}
    block = "body.3.body.5."
    assert camixer[block + "mixer.route.in_conv.0.weight"] == (16, 64, 1, 1)
    assert camixer[block + "mixer.route.out_mask.0.weight"] == (16, 256)
    assert camixer[block + "mixer.route.out_CA.1.weight"] == (60, 16, 1, 1)
    assert camixer[block + "mixer.conv_sptial.1.weight"] == (60, 1, 3, 3)
    assert camixer[block + "ffn.project_in.weight"] == (120, 60, 1, 1)
    assert block + "ffn.project_in.bias" not in camixer
    assert camixer["global_predictor.2.weight"] == (2, 8, 3, 3)
    assert camixer["tail.0.weight"] == (48, 60, 3, 3)
    assert "body.4.body_tail.weight" not in camixer and "body.3.body.6.norm1.weight" not in camixer


# ---------------------------------------------------------------------------------------------
# Forwards equal the official ones


@pytest.mark.parametrize("config", ["tiny", "x4", {"dim": 12, "n_blocks": 2, "upscaling_factor": 3}])
@pytest.mark.parametrize("size", [(19, 27), (8, 13), (32, 32)])
def test_safmn_forward_equals_the_official(config: str | dict, size: tuple[int, int]) -> None:
    ours, reference = _pair("safmn", config)
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        expected = reference(x)
        actual = ours(x)
    scale = architectures.get_arch("safmn").scale(architectures.resolve_config("safmn", config))
    assert actual.shape == (2, 3, size[0] * scale, size[1] * scale)
    torch.testing.assert_close(actual, expected, **TOLERANCE)


@pytest.mark.parametrize(("config", "size"), [("tiny", (23, 19)), ("tiny", (16, 40)), ("x4", (21, 27))])
def test_camixersr_sampled_routing_equals_the_official(config: str, size: tuple[int, int]) -> None:
    """With the official Gumbel draw and the same random stream, both pick the same windows."""
    ours, reference = _pair("camixersr", config, sample_routing=True)
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        torch.manual_seed(7)
        expected = reference(x)
        torch.manual_seed(7)
        actual = ours(x)
    assert actual.shape == expected.shape == (1, 3, size[0] * ours.scale, size[1] * ours.scale)
    torch.testing.assert_close(actual, expected, **TOLERANCE)


def test_camixersr_full_attention_equals_the_official_without_sampling() -> None:
    """ratio 1 sends every window to attention, so the default (expected) routing equals the official draw."""
    ours, reference = _pair("camixersr", "tiny", ratio=1.0)
    x = torch.rand(2, 3, 17, 30)
    with torch.no_grad():
        expected = reference(x)
        actual = ours(x)
    torch.testing.assert_close(actual, expected, **TOLERANCE)


def test_camixersr_default_routing_is_deterministic_and_keeps_the_expected_count() -> None:
    ours = _randomised(architectures.build_model("camixersr", "tiny"))
    x = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        first, second = ours(x), ours(x)
        torch.testing.assert_close(first, second, rtol=0, atol=0)
        features = ours.head(x)
        mixer = ours.body[0].body[0].mixer
        condition = torch.cat(
            [mixer.project_v(features), ours.global_predictor(features), mixer._window_grid(features)], dim=1
        )
        ranking, keep, *_ = mixer.route(condition)
        scores = mixer.route.out_mask(
            rearrange(
                mixer.route.in_conv(condition).mean(1, keepdim=True), "b c (h p) (w q) -> b (h w) (p q c)", p=8, q=8
            )
        )
    windows = (24 // 8) * (32 // 8)
    assert keep == min(int(windows * scores.softmax(-1)[..., 0].mean() * 2 * 0.5), windows)
    assert sorted(ranking[0].tolist()) == list(range(windows))
    assert torch.equal(ranking[0], torch.argsort(scores[0, :, 0], descending=True))


# ---------------------------------------------------------------------------------------------
# Registry: configs, scale, detection of bare checkpoints, zoo entries


@pytest.mark.parametrize("arch", ["safmn", "camixersr"])
def test_every_named_config_is_recovered_from_its_keys(arch: str) -> None:
    for name in architectures.ARCHITECTURES[arch].configs:
        state = architectures.build_on_meta(arch, name).state_dict()
        assert architectures.infer_arch(state) == (arch, architectures.resolve_config(arch, name)), name


def test_scale_padding_and_channels() -> None:
    safmn, camixer = architectures.get_arch("safmn"), architectures.get_arch("camixersr")
    for scale in (2, 3, 4):
        assert safmn.scale(architectures.resolve_config("safmn", f"x{scale}")) == scale
        assert safmn.scale(architectures.resolve_config("safmn", f"large-x{scale}")) == scale
        assert camixer.scale(architectures.resolve_config("camixersr", f"x{scale}")) == scale
    assert safmn.padding({}) == (8, "reflect-replicate")  # as spandrel pads it (tests/test_upscale.py)
    assert camixer.padding({}) == (16, "reflect")
    assert camixer.channels({"n_colors": 1}) == (1, 1)
    assert architectures.get_arch("nafnet").scale({}) == architectures.get_arch("restormer").scale({}) == 1


@pytest.mark.parametrize(
    ("arch", "config", "wrapper"), [("safmn", "tiny", "params"), ("camixersr", "tiny", "params_ema")]
)
def test_bare_official_checkpoints_are_recognised(tmp_path: Path, arch: str, config: str, wrapper: str) -> None:
    """A BasicSR file (weights under ``params``/``params_ema``) loads with no name, card or flag."""
    source = _randomised(architectures.build_model(arch, config))
    path = tmp_path / "net_g_latest.pth"
    torch.save({wrapper: source.state_dict()}, path)
    descriptor = load_descriptor(path)
    assert (descriptor.arch, descriptor.config) == (arch, architectures.resolve_config(arch, config))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(descriptor.module(x), source(x))


def test_upscale_zoo_entries() -> None:
    entries = {entry.name: entry for entry in pretrained.ENTRIES if entry.task == "upscale"}
    shipped = entries.pop("restorecli-upscale")  # trained here, in weights/: no URL
    assert (shipped.arch, shipped.config, shipped.url, shipped.default_for) == ("safmn", "x4", None, "upscale")
    assert set(entries) == {
        "safmn-x2",
        "safmn-x3",
        "safmn-x4",
        "safmn-large-real-x2",
        "safmn-large-real-x4",
        "camixersr-x4",
    }
    for entry in entries.values():
        kwargs = architectures.resolve_config(entry.arch, entry.config)
        scale = architectures.get_arch(entry.arch).scale(kwargs)
        assert entry.url is not None and entry.url.startswith("https://") and entry.url.endswith(entry.filename)
        assert entry.license == "Apache-2.0"
        if "real" not in entry.name:
            assert entry.paper_score.startswith(f"x{scale} Y-channel PSNR/SSIM, border crop {scale}: Set5 ")
            assert entry.paper_score.count("/") == 1 + 5 and "Manga109" in entry.paper_score  # header + 5 sets
    assert _count(architectures.build_on_meta("safmn", entries["safmn-x4"].config)) == 239_520


def test_unrecognised_keys_name_every_native_family() -> None:
    with pytest.raises(Exception, match="Restormer, NAFNet, SAFMN or CAMixerSR"):
        architectures.infer_arch({"conv_first.weight": torch.zeros(1)})


def test_odd_sizes_give_exact_output_sizes() -> None:
    rng = np.random.default_rng(0)
    for arch in ("safmn", "camixersr"):
        model = _randomised(architectures.build_model(arch, "tiny"))
        for height, width in ((9, 11), (17, 8)):
            x = torch.from_numpy(rng.random((1, 3, height, width), dtype=np.float32))
            with torch.no_grad():
                assert model(x).shape == (1, 3, 2 * height, 2 * width)


def test_camixersr_counts_on_the_meta_device_with_the_nominal_window_count() -> None:
    """Shape-only profiling has no content to route: ``ratio`` of the windows take attention."""
    model = architectures.build_on_meta("camixersr", "tiny")
    with torch.no_grad():
        out = model(torch.empty(1, 3, 24, 32, device="meta"))
    assert out.is_meta and out.shape == (1, 3, 48, 64)
