"""Restormer / NAFNet modules: official key names and shapes, parameter counts, forward contracts.

Key names, shapes and counts are transcribed from the official definitions
(swz30/Restormer ``restormer_arch.py``; megvii-research/NAFNet ``NAFNet_arch.py``, ``local_arch.py``)
and the counts the issue quotes. Full-size models are built on the meta device (no memory, no
forward); forwards use the tiny test configs.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from restorecli.archs import NAFNet, NAFNetLocal, Restormer
from restorecli.archs.nafnet import LayerNorm2d, LocalAvgPool2d
from restorecli.archs.restormer import LayerNorm
from restorecli.errors import ConfigError
from restorecli.zoo.architectures import build_model, build_on_meta, resolve_config

PARAMETER_COUNTS = [
    ("restormer", "deraining", 26_126_644),
    ("restormer", "motion-deblurring", 26_126_644),
    ("restormer", "defocus-deblurring-single", 26_126_644),
    ("restormer", "denoise-color", 26_111_668),
    ("restormer", "real-denoising", 26_111_668),
    ("restormer", "denoise-gray", 26_109_076),
    ("restormer", "defocus-deblurring-dual", 26_132_548),
    ("nafnet", "sidd-width32", 29_159_715),
    ("nafnet", "sidd-width64", 115_982_915),
    ("nafnet", "gopro-width32", 17_111_907),
    ("nafnet", "gopro-width64", 67_888_835),
    ("nafnet", "reds-width64", 67_888_835),
    ("nafnet-local", "gopro-width64", 67_888_835),
]

# Representative official keys -> shapes (dim 48, hidden int(48 * 2.66) = 127 at level 1,
# int(96 * 2.66) = 255 at full-resolution decoder, int(384 * 2.66) = 1021 at the latent level).
RESTORMER_KEYS = {
    "patch_embed.proj.weight": (48, 3, 3, 3),
    "encoder_level1.0.norm1.body.weight": (48,),
    "encoder_level1.0.norm1.body.bias": (48,),
    "encoder_level1.0.attn.temperature": (1, 1, 1),
    "encoder_level1.0.attn.qkv.weight": (144, 48, 1, 1),
    "encoder_level1.0.attn.qkv_dwconv.weight": (144, 1, 3, 3),
    "encoder_level1.0.attn.project_out.weight": (48, 48, 1, 1),
    "encoder_level1.0.ffn.project_in.weight": (254, 48, 1, 1),
    "encoder_level1.0.ffn.dwconv.weight": (254, 1, 3, 3),
    "encoder_level1.0.ffn.project_out.weight": (48, 127, 1, 1),
    "down1_2.body.0.weight": (24, 48, 3, 3),
    "encoder_level2.5.attn.temperature": (2, 1, 1),
    "encoder_level3.5.norm2.body.weight": (192,),
    "latent.7.attn.temperature": (8, 1, 1),
    "latent.7.ffn.project_out.weight": (384, 1021, 1, 1),
    "up4_3.body.0.weight": (768, 384, 3, 3),
    "reduce_chan_level3.weight": (192, 384, 1, 1),
    "reduce_chan_level2.weight": (96, 192, 1, 1),
    "up2_1.body.0.weight": (192, 96, 3, 3),
    "decoder_level1.3.attn.temperature": (1, 1, 1),
    "decoder_level1.0.norm1.body.weight": (96,),
    "refinement.3.ffn.project_in.weight": (510, 96, 1, 1),
    "output.weight": (3, 96, 3, 3),
}
NAFNET_SIDD32_KEYS = {
    "intro.weight": (32, 3, 3, 3),
    "intro.bias": (32,),
    "ending.weight": (3, 32, 3, 3),
    "encoders.0.0.beta": (1, 32, 1, 1),
    "encoders.0.0.gamma": (1, 32, 1, 1),
    "encoders.0.0.conv1.weight": (64, 32, 1, 1),
    "encoders.0.0.conv2.weight": (64, 1, 3, 3),
    "encoders.0.0.conv3.weight": (32, 32, 1, 1),
    "encoders.0.0.sca.1.weight": (32, 32, 1, 1),
    "encoders.0.0.sca.1.bias": (32,),
    "encoders.0.0.conv4.weight": (64, 32, 1, 1),
    "encoders.0.0.conv5.weight": (32, 32, 1, 1),
    "encoders.0.0.norm1.weight": (32,),
    "encoders.0.0.norm2.bias": (32,),
    "downs.0.weight": (64, 32, 2, 2),
    "encoders.3.7.conv1.weight": (512, 256, 1, 1),
    "middle_blks.11.beta": (1, 512, 1, 1),
    "ups.0.0.weight": (1024, 512, 1, 1),
    "decoders.0.1.sca.1.weight": (256, 256, 1, 1),
    "decoders.3.1.conv5.weight": (32, 32, 1, 1),
}


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def _randomised(module: nn.Module) -> nn.Module:
    """Random weights everywhere: NAFNet's zero-initialised beta/gamma would hide every block."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3 + (1.0 if parameter.dim() == 1 else 0.0))
    return module.eval()


@pytest.mark.parametrize(("arch", "config", "expected"), PARAMETER_COUNTS)
def test_parameter_counts_equal_the_official_models(arch: str, config: str, expected: int) -> None:
    model = build_on_meta(arch, config)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_restormer_keys_and_shapes_are_official() -> None:
    shapes = _shapes(build_on_meta("restormer", "deraining"))
    assert {key: shapes.get(key) for key in RESTORMER_KEYS} == RESTORMER_KEYS
    assert "skip_conv.weight" not in shapes
    assert not any(key.endswith(("qkv.bias", "output.bias")) for key in shapes)  # bias=False
    assert not any("encoder_level4" in key or "decoder_level4" in key for key in shapes)


def test_restormer_variant_keys_are_official() -> None:
    dual = _shapes(build_on_meta("restormer", "defocus-deblurring-dual"))
    assert dual["patch_embed.proj.weight"] == (48, 6, 3, 3)
    assert dual["skip_conv.weight"] == (96, 48, 1, 1)
    assert dual["output.weight"] == (3, 96, 3, 3)
    grey = _shapes(build_on_meta("restormer", "denoise-gray"))
    assert grey["patch_embed.proj.weight"] == (48, 1, 3, 3)
    assert grey["output.weight"] == (1, 96, 3, 3)
    colour = _shapes(build_on_meta("restormer", "denoise-color"))
    assert colour["encoder_level1.0.norm1.body.weight"] == (48,)
    assert not any(key.endswith("body.bias") for key in colour)  # BiasFree LayerNorm


def test_nafnet_keys_and_shapes_are_official() -> None:
    shapes = _shapes(build_on_meta("nafnet", "sidd-width32"))
    assert {key: shapes.get(key) for key in NAFNET_SIDD32_KEYS} == NAFNET_SIDD32_KEYS
    assert "ups.0.0.bias" not in shapes
    assert "middle_blks.12.beta" not in shapes
    gopro = _shapes(build_on_meta("nafnet-local", "gopro-width64"))
    assert gopro["encoders.3.27.gamma"] == (1, 512, 1, 1)
    assert "encoders.3.28.gamma" not in gopro and "middle_blks.1.beta" not in gopro


def test_nafnet_local_state_dict_equals_nafnet() -> None:
    assert _shapes(build_on_meta("nafnet-local", "sidd-width32")) == _shapes(build_on_meta("nafnet", "sidd-width32"))


def test_official_key_order_is_kept() -> None:
    keys = list(build_on_meta("nafnet", "tiny").state_dict())
    top_level = list(dict.fromkeys(key.split(".")[0] for key in keys))
    assert top_level == ["intro", "ending", "encoders", "decoders", "middle_blks", "ups", "downs"]
    assert keys[4:6] == ["encoders.0.0.beta", "encoders.0.0.gamma"]


@pytest.mark.parametrize("arch", ["nafnet", "nafnet-local"])
def test_nafnet_round_trips_odd_sizes(arch: str) -> None:
    model = _randomised(build_model(arch, "tiny"))
    x = torch.rand(2, 3, 67, 93)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_nafnet_pads_with_zeros_bottom_right() -> None:
    model = _randomised(build_model("nafnet", "tiny"))  # two levels: multiple of 4
    x = torch.rand(1, 3, 67, 93)
    with torch.no_grad():
        own = model(x)
        padded = model(F.pad(x, (0, 3, 0, 1)))[:, :, :67, :93]
        reflected = model(F.pad(x, (0, 3, 0, 1), mode="reflect"))[:, :, :67, :93]
    torch.testing.assert_close(own, padded, rtol=0, atol=1e-6)
    assert not torch.allclose(own, reflected, atol=1e-4)


def test_fresh_nafnet_blocks_are_identity() -> None:
    # beta = gamma = 0 at init: every block passes its input through (official initialisation).
    model = build_model("nafnet", "tiny").eval()
    block = model.encoders[0][0]
    x = torch.rand(1, 4, 8, 8)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize(
    "config",
    [
        "tiny",
        {
            "dim": 4,
            "heads": [1, 2, 2, 4],
            "num_blocks": [1, 1, 1, 1],
            "num_refinement_blocks": 1,
            "LayerNorm_type": "BiasFree",
        },
    ],
)
def test_restormer_round_trips_odd_sizes_with_reflect_padding(config: str | dict) -> None:
    model = _randomised(build_model("restormer", config))
    x = torch.rand(1, 3, 67, 93)
    padded = F.pad(x, (0, -93 % 8, 0, -67 % 8), mode="reflect")
    with torch.no_grad():
        y = model(padded)[:, :, :67, :93]
    assert padded.shape[-2:] == (72, 96)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_restormer_dual_pixel_and_grey_channels() -> None:
    base = {"dim": 2, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 1, 2, 2]}
    dual = _randomised(build_model("restormer", {**base, "inp_channels": 6, "dual_pixel_task": True}))
    grey = _randomised(build_model("restormer", {**base, "inp_channels": 1, "out_channels": 1}))
    with torch.no_grad():
        assert dual(torch.rand(1, 6, 16, 24)).shape == (1, 3, 16, 24)
        assert grey(torch.rand(1, 1, 16, 24)).shape == (1, 1, 16, 24)


def test_restormer_layer_norms_match_closed_forms() -> None:
    x = torch.randn(2, 6, 5, 7)
    with_bias = LayerNorm(6, "WithBias")
    bias_free = LayerNorm(6, "BiasFree")
    with torch.no_grad():
        with_bias.body.weight.uniform_(0.5, 2)
        with_bias.body.bias.uniform_(-1, 1)
        bias_free.body.weight.copy_(with_bias.body.weight)
    channels_last = x.permute(0, 2, 3, 1)
    expected = F.layer_norm(channels_last, (6,), with_bias.body.weight, with_bias.body.bias, eps=1e-5)
    torch.testing.assert_close(with_bias(x), expected.permute(0, 3, 1, 2), rtol=1e-5, atol=1e-5)
    # BiasFree divides by the standard deviation but does not subtract the mean.
    scale = torch.sqrt(x.var(1, keepdim=True, unbiased=False) + 1e-5)
    weight = bias_free.body.weight.view(1, 6, 1, 1)
    torch.testing.assert_close(bias_free(x), x / scale * weight, rtol=1e-5, atol=1e-6)


def test_nafnet_layer_norm_matches_closed_form_and_gradients() -> None:
    norm = LayerNorm2d(5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    x = torch.randn(2, 5, 4, 6, dtype=torch.float64, requires_grad=True)
    norm = norm.double()
    expected = F.layer_norm(x.permute(0, 2, 3, 1), (5,), norm.weight, norm.bias, eps=1e-6).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)
    assert torch.autograd.gradcheck(norm, (x,))


def test_local_pool_equals_box_filter_with_replicated_border() -> None:
    x = torch.randn(2, 3, 11, 17)
    pool = LocalAvgPool2d((4, 6))
    window = F.avg_pool2d(x, (4, 6), stride=1)  # (8, 12): 3 rows and 5 columns short
    expected = F.pad(window, (2, 3, 1, 2), mode="replicate")
    torch.testing.assert_close(pool(x), expected, rtol=1e-5, atol=1e-5)


def test_local_pool_is_global_when_window_covers_the_map() -> None:
    x = torch.randn(1, 3, 9, 12)
    torch.testing.assert_close(LocalAvgPool2d((9, 12))(x), x.mean((2, 3), keepdim=True))
    # Taller than the map in one direction only: full-height windows, local across the width.
    tall = LocalAvgPool2d((20, 4))(x)
    # 9 window positions across 12 columns: 1 replicated column on the left, 2 on the right.
    expected = F.avg_pool2d(x, (9, 4), stride=1).expand(-1, -1, 9, -1)
    torch.testing.assert_close(tall[..., 1:10], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tall[..., :1], expected[..., :1])
    torch.testing.assert_close(tall[..., 10:], expected[..., -1:].expand(-1, -1, -1, 2))


def test_local_pool_fast_variant_approximates_exact() -> None:
    x = torch.rand(1, 2, 40, 60)
    exact = LocalAvgPool2d((16, 16))(x)
    fast = LocalAvgPool2d((16, 16), fast_imp=True, max_reduction=(2, 2))(x)
    assert fast.shape == exact.shape
    assert (fast - exact).abs().mean() < 0.05


def test_tlc_window_sizes_follow_the_training_patch() -> None:
    # Official rule: window = feature size during a train-size pass * int(1.5 * train) // train.
    two_levels = {"width": 4, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]}
    model = NAFNetLocal(**two_levels, train_size=(1, 3, 256, 256))
    assert model.encoders[0][0].sca[0].kernel_size == (384, 384)
    assert model.encoders[1][0].sca[0].kernel_size == (192, 192)
    assert model.middle_blks[0].sca[0].kernel_size == (96, 96)
    assert model.decoders[0][0].sca[0].kernel_size == (192, 192)
    assert model.decoders[1][0].sca[0].kernel_size == (384, 384)
    # A training size that is not a multiple of 4 is padded first, as in the official pass.
    odd = NAFNetLocal(**two_levels, train_size=(1, 3, 30, 20))
    assert odd.encoders[0][0].sca[0].kernel_size == (32 * 45 // 30, 20 * 30 // 20)


@pytest.mark.parametrize(
    ("size", "same"), [((32, 32), True), ((48, 48), True), ((40, 28), True), ((64, 64), False), ((48, 80), False)]
)
def test_tlc_equals_nafnet_while_windows_cover_the_image(size: tuple[int, int], same: bool) -> None:
    # Tiny TLC config: train 32 -> window 48 at full resolution, 24 at level 1, 12 in the middle.
    # Up to 48x48 (padded) every window covers its whole map, so pooling stays global.
    local = _randomised(build_model("nafnet-local", "tiny"))
    plain = build_model("nafnet", "tiny").eval()
    plain.load_state_dict(local.state_dict(), strict=True)
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        close = torch.allclose(local(x), plain(x), rtol=0, atol=1e-6)
    assert close is same


def test_constructors_reject_inconsistent_configs() -> None:
    with pytest.raises(ConfigError, match="decoder levels"):
        NAFNet(enc_blk_nums=[1, 1], dec_blk_nums=[1])
    with pytest.raises(ConfigError, match="4 levels"):
        Restormer(num_blocks=[1, 1, 1])
    with pytest.raises(ConfigError, match="LayerNorm_type"):
        Restormer(LayerNorm_type="Batch")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="train_size"):
        NAFNetLocal(train_size=(256, 256))


def test_tiny_configs_are_small() -> None:
    for arch in ("restormer", "nafnet"):
        model = build_model(arch, resolve_config(arch, "tiny"))
        assert sum(p.numel() for p in model.parameters()) < 20_000
