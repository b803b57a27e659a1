"""Our fast forwards equal the official formulation (:mod:`restorecli.testing.official`).

Our modules regroup the official computation for speed (channels-last views, no normalised
copies, attention folded into ``project_out``, fused norms), so the two must agree to float
rounding in both memory layouts, for every variant (bias, BiasFree norms, several heads, dual
pixel, grey), and give the same gradients (training uses the same forward).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from restorecli.archs.nafnet import NAFBlock
from restorecli.archs.restormer import Attention, FeedForward, head_grams
from restorecli.testing import official
from restorecli.zoo.architectures import build_model
from tests.variants import RESTORMER_VARIANTS


def _randomise(model: nn.Module, seed: int = 1) -> torch.Generator:
    """Move norms, scales and biases off their 1/0 initialisation; convolutions keep their random init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("body.weight", "norm1.weight", "norm2.weight", "temperature")):
                parameter.uniform_(0.5, 2.0, generator=generator)
            elif name.endswith(("bias", "beta", "gamma")):
                parameter.normal_(0.0, 0.1, generator=generator)
    return generator


def _compare(model: nn.Module, x: torch.Tensor, channels_last: bool) -> None:
    model.eval()
    with torch.no_grad():
        expected = official.OfficialForward(model)(x)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        actual = model(x)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("variant", RESTORMER_VARIANTS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_restormer_equals_the_official_computation(variant: str, channels_last: bool) -> None:
    config = {"dim": 4, "num_blocks": [1, 1, 1, 2], "num_refinement_blocks": 1, "heads": [1, 1, 2, 2]}
    model = build_model("restormer", {**config, **RESTORMER_VARIANTS[variant]})
    generator = _randomise(model)
    x = torch.rand(2, model.patch_embed.proj.in_channels, 24, 40, generator=generator)
    _compare(model, x, channels_last)


@pytest.mark.parametrize("arch", ["nafnet", "nafnet-local"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_nafnet_equals_the_official_computation(arch: str, channels_last: bool) -> None:
    model = build_model(arch, "tiny")
    generator = _randomise(model)
    x = torch.rand(2, 3, 70, 45, generator=generator)  # not a multiple of 4: padded; 70 > TLC window 48
    _compare(model, x, channels_last)


def _nafnet_block() -> NAFBlock:
    block = NAFBlock(4).double()
    _randomise(block)
    return block


GRADIENT_CASES = {
    "mdta": (lambda: Attention(8, 2, bias=True).double(), official.restormer_attention),
    "gdfn": (lambda: FeedForward(8, 2.66, bias=True).double(), official.restormer_feed_forward),
    "nafblock": (_nafnet_block, official.nafnet_block),
}


@pytest.mark.parametrize("case", GRADIENT_CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_block_gradients_equal_the_official_computation(case: str, channels_last: bool) -> None:
    # Training uses the same forwards: their gradients must match the official formulation's too.
    make, official_forward = GRADIENT_CASES[case]
    module = make()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)  # off the 0/1 initialisation
    x = torch.randn(2, 8 if case != "nafblock" else 4, 6, 5, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    ours = torch.autograd.grad(module(x).square().sum(), [x, *module.parameters()])
    theirs = torch.autograd.grad(official_forward(module, x).square().sum(), [x, *module.parameters()])
    for mine, reference in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine, reference)


@pytest.mark.parametrize("heads", [1, 2, 4])
def test_head_grams_agree_on_both_routes(heads: int) -> None:
    # fp32 reads per-head views; other dtypes take the full product's diagonal blocks.
    generator = torch.Generator().manual_seed(heads)
    query, key = torch.randn(2, 2, 30, 8, generator=generator, dtype=torch.float64).unbind(0)
    per_head = 8 // heads
    expected = torch.stack(
        [
            query[:, :, h * per_head : (h + 1) * per_head].mT @ key[:, :, h * per_head : (h + 1) * per_head]
            for h in range(heads)
        ],
        dim=1,
    )
    torch.testing.assert_close(head_grams(query, key, heads), expected)  # float64: the block route
    torch.testing.assert_close(head_grams(query.float(), key.float(), heads), expected.float())


def test_official_wrapper_rejects_other_modules() -> None:
    with pytest.raises(TypeError, match="Restormer or NAFNet"):
        official.OfficialForward(NAFBlock(4))
