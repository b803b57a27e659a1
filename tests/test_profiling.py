"""Profiling: MACs against hand counts and the official formulation, parameters against the papers'
block formulas, config and memory guards, runtime plumbing through the engine."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import restorecli
from restorecli import profiling
from restorecli.archs.restormer import Attention
from restorecli.engine.options import RunOptions
from restorecli.errors import ConfigError, DeviceError, UnknownModelError
from restorecli.profiling import report as report_module
from restorecli.profiling import runtime
from restorecli.testing import official
from restorecli.zoo.architectures import build_model, build_on_meta
from restorecli.zoo.descriptor import ModelDescriptor


def macs_of(module: nn.Module, shape: tuple[int, ...], *, on_meta: bool = True) -> profiling.MacCount:
    return profiling.count_macs(module.eval(), shape, on_meta=on_meta)


# ---------------------------------------------------------------------------------------------
# Hand-counted single operators


def test_pointwise_conv_counts_one_mac_per_weight_per_output_pixel() -> None:
    # 16 outputs x 8 inputs per pixel, 10 x 12 pixels, batch 2; the bias add is not counted.
    assert macs_of(nn.Conv2d(8, 16, 1), (2, 8, 10, 12)).total == 2 * 10 * 12 * 16 * 8


def test_depthwise_conv_counts_only_its_own_channel() -> None:
    # groups=C: each of the 6 outputs sees 1 input channel through a 3x3 kernel.
    count = macs_of(nn.Conv2d(6, 6, 3, padding=1, groups=6), (1, 6, 9, 7))
    assert count.total == 9 * 7 * 6 * 9
    assert count.flops == 2 * count.total


def test_grouped_and_strided_convs_use_output_size_and_group_width() -> None:
    assert macs_of(nn.Conv2d(8, 4, 3, padding=1, groups=2), (1, 8, 6, 6)).total == 6 * 6 * 4 * (8 // 2) * 9
    # NAFNet's 2x2 stride-2 down-sampling: 4x4 outputs from 8x8.
    assert macs_of(nn.Conv2d(4, 8, 2, stride=2), (1, 4, 8, 8)).total == 4 * 4 * 8 * 4 * 4


def test_transposed_conv_counts_per_input_pixel() -> None:
    # Every input pixel and channel scatters a 2x2 kernel into 2 output channels.
    assert macs_of(nn.ConvTranspose2d(4, 2, 2, stride=2), (1, 4, 5, 5)).total == 5 * 5 * 4 * 2 * 2 * 2


def test_linear_counts_in_times_out_per_row_without_bias() -> None:
    # Applied to the last axis: N*C*H rows of W features each.
    assert macs_of(nn.Linear(7, 3), (2, 4, 5, 7)).total == 2 * 4 * 5 * 7 * 3


class ChannelGram(nn.Module):
    """``X X^T`` over channels, then ``(X X^T) X``: the shape of Restormer's transposed attention."""

    def __init__(self, use_einsum: bool) -> None:
        super().__init__()
        self.use_einsum = use_einsum

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(2)
        if self.use_einsum:
            gram = torch.einsum("bcn,bdn->bcd", flat, flat)
            return torch.einsum("bcd,bdn->bcn", gram, flat)
        return (flat @ flat.transpose(1, 2)) @ flat


@pytest.mark.parametrize("use_einsum", [False, True])
def test_activation_matmul_and_einsum_are_counted(use_einsum: bool) -> None:
    n, c, h, w = 2, 5, 4, 3
    count = macs_of(ChannelGram(use_einsum), (n, c, h, w))
    assert count.total == 2 * n * c * c * h * w  # two (C x HW)(HW x C)-sized products
    assert set(count.by_operator) == {"bmm"}


class Uncounted(nn.Module):
    """Element-wise ops, normalisation, softmax, pooling and resampling: all outside the convention."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(6)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        y = self.norm(x).softmax(dim=1) * x + 1
        y = F.pixel_shuffle(self.pool(F.gelu(y)).repeat(1, 4, 1, 1), 2)
        return F.interpolate(y, scale_factor=2, mode="bilinear")


def test_elementwise_norm_softmax_pooling_and_resampling_are_not_counted() -> None:
    count = macs_of(Uncounted(), (1, 3, 6, 6))
    assert count.total == 0
    assert count.by_operator == {}


def test_meta_count_equals_real_count_and_leaves_the_module_untouched() -> None:
    model = build_model("restormer", "tiny").eval()
    before = {name: t.clone() for name, t in model.state_dict().items()}
    on_meta = macs_of(model, (1, 3, 32, 32))
    real = macs_of(model, (1, 3, 32, 32), on_meta=False)
    assert on_meta == real
    assert all(t.device.type == "cpu" and torch.equal(t, before[name]) for name, t in model.state_dict().items())


# ---------------------------------------------------------------------------------------------
# Whole networks against independent references


def conv_macs_by_hooks(model: nn.Module, shape: tuple[int, ...], products: tuple[str, ...] = ()) -> int:
    """Reference: sum over every Conv2d the official forward calls of output elements x (in/groups) x kernel area.

    Our forwards call some convolutions through their weights (half-width gates) or as matrix
    products (``products``: names ending so are left out), so the hooks watch the official forward.
    """
    total = 0

    def hook(conv: nn.Module, _: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal total
        assert isinstance(conv, nn.Conv2d)
        total += out.numel() * conv.in_channels // conv.groups * conv.kernel_size[0] * conv.kernel_size[1]

    handles = [
        module.register_forward_hook(hook)
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d) and not name.endswith(products)
    ]
    with torch.no_grad():
        official.OfficialForward(model)(torch.rand(shape))
    for handle in handles:
        handle.remove()
    return total


def attention_macs_by_hooks(model: nn.Module, shape: tuple[int, ...], official: bool = False) -> int:
    """Reference: MDTA's matrix products per block, from each block's input shape.

    Official: ``q @ k^T`` and ``attn @ v``, ``N * C^2/heads * H * W`` each (``project_out`` is a
    convolution). restorecli: ``q^T k`` as before, ``attn`` folded into ``project_out``'s weight
    (``N * C^3/heads``), and ``v @ (folded weight)`` (``N * C^2 * H * W``) replacing ``attn @ v``
    and the ``project_out`` convolution.
    """
    total = 0

    def hook(attn: nn.Module, args: tuple[Tensor, ...]) -> None:
        nonlocal total
        n, c, h, w = args[0].shape
        heads = attn.num_heads  # type: ignore[union-attr]
        if official:
            total += 2 * n * c * (c // heads) * h * w
        else:
            total += n * c * (c // heads) * h * w + n * c**3 // heads + n * c * c * h * w

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, Attention)]
    with torch.no_grad():
        model(torch.rand(shape))
    for handle in handles:
        handle.remove()
    return total


def test_tiny_restormer_macs_are_its_convolutions_plus_its_attention_products() -> None:
    model = build_model("restormer", "tiny").eval()
    shape = (2, 3, 16, 24)
    count = macs_of(model, shape)
    products = count.total - count.by_operator["convolution"]
    assert count.by_operator["convolution"] == conv_macs_by_hooks(model, shape, products=("attn.project_out",))
    assert products == attention_macs_by_hooks(model, shape) > 0
    official_count = macs_of(official.OfficialForward(model), shape)
    assert official_count.by_operator["bmm"] == attention_macs_by_hooks(model, shape, official=True)


@pytest.mark.parametrize("on_meta", [True, False])
def test_tiny_nafnet_macs_are_its_convolutions(on_meta: bool) -> None:
    # On the CPU, conv3 and conv5 run as batched products with their scales folded into the
    # weights; meta tensors keep the standard layout, where they run as convolutions. Same MACs.
    model = build_model("nafnet", "tiny").eval()
    shape = (1, 3, 32, 32)
    count = macs_of(model, shape, on_meta=on_meta)
    assert count.total == conv_macs_by_hooks(model, shape)
    expected_products = 0 if on_meta else count.total - conv_macs_by_hooks(model, shape, products=("conv3", "conv5"))
    assert count.total - count.by_operator["convolution"] == expected_products


def test_restormer_deraining_at_256_matches_the_paper_and_counts_attention() -> None:
    count = macs_of(
        official.OfficialForward(build_on_meta("restormer", "deraining")),
        (1, 3, 256, 256),
    )
    # The paper's "140 G FLOPs" (github.com/swz30/Restormer/issues/19: at 256x256) is the
    # convolutions' MACs; its counter (KAIR) does not see the attention products.
    assert count.by_operator["convolution"] == pytest.approx(140e9, rel=0.01)
    # Attention: 2 * C^2/heads * HW per block, summed by level (blocks, C, heads, HW).
    levels = [
        (4, 48, 1, 256**2),
        (6, 96, 2, 128**2),
        (6, 192, 4, 64**2),
        (8, 384, 8, 32**2),
    ]
    levels += [
        (6, 192, 4, 64**2),
        (6, 96, 2, 128**2),
        (4 + 4, 96, 1, 256**2),
    ]  # decoders, refinement
    assert count.by_operator["bmm"] == sum(blocks * 2 * c * c // heads * hw for blocks, c, heads, hw in levels)


# Exact parameter counts from the papers' block definitions (bias-free Restormer convs, GDFN width
# int(2.66 C), WithBias LayerNorm; NAFBlock with DW_Expand = FFN_Expand = 2 and biased convs).


def restormer_parameters(dim: int = 48, blocks: tuple[int, ...] = (4, 6, 6, 8), refine: int = 4) -> int:
    def block(c: int, heads: int) -> int:
        hidden = int(c * 2.66)
        attention = heads + c * 3 * c + 3 * c * 9 + c * c
        feed_forward = c * 2 * hidden + 2 * hidden * 9 + hidden * c
        return 2 * (2 * c) + attention + feed_forward

    heads = (1, 2, 4, 8)
    encoder = sum(blocks[i] * block(dim * 2**i, heads[i]) for i in range(4))
    decoder = blocks[2] * block(4 * dim, 4) + blocks[1] * block(2 * dim, 2) + (blocks[0] + refine) * block(2 * dim, 1)
    downs = sum(dim * 2**i * dim * 2**i // 2 * 9 for i in range(3))
    ups = sum(dim * 2**i * dim * 2 ** (i + 1) * 9 for i in (3, 2, 1))
    reductions = 8 * dim * 4 * dim + 4 * dim * 2 * dim
    return 3 * dim * 9 + encoder + downs + ups + reductions + decoder + 2 * dim * 3 * 9


def nafnet_parameters(width: int, encoders: list[int], middle: int, decoders: list[int]) -> int:
    def block(c: int) -> int:
        return 7 * c * c + 33 * c

    total = (3 * width * 9 + width) + (width * 3 * 9 + 3)
    c = width
    for count in encoders:
        total += count * block(c) + c * 2 * c * 4 + 2 * c
        c *= 2
    total += middle * block(c)
    for count in decoders:
        total += c * 2 * c
        c //= 2
        total += count * block(c)
    return total


@pytest.mark.parametrize(
    ("arch", "config", "expected", "paper_millions"),
    [
        ("restormer", "deraining", restormer_parameters(), 26.13),
        (
            "nafnet",
            "sidd-width32",
            nafnet_parameters(32, [2, 2, 4, 8], 12, [2, 2, 2, 2]),
            29.1,
        ),
        (
            "nafnet",
            "sidd-width64",
            nafnet_parameters(64, [2, 2, 4, 8], 12, [2, 2, 2, 2]),
            115.9,
        ),
        (
            "nafnet",
            "gopro-width64",
            nafnet_parameters(64, [1, 1, 1, 28], 1, [1, 1, 1, 1]),
            None,
        ),
        (
            "nafnet-local",
            "gopro-width64",
            nafnet_parameters(64, [1, 1, 1, 28], 1, [1, 1, 1, 1]),
            None,
        ),
    ],
)
def test_zoo_parameter_counts_are_exact(arch: str, config: str, expected: int, paper_millions: float | None) -> None:
    counted = profiling.count_parameters(build_on_meta(arch, config))
    assert counted == profiling.ParameterCount(total=expected, trainable=expected)
    if paper_millions is not None:  # 26.13 M (Restormer paper); 29.1 / 115.9 M (NAFNet issue #51, ptflops)
        assert expected == pytest.approx(paper_millions * 1e6, rel=0.003)


def test_trainable_excludes_frozen_parameters_and_bytes_follow_dtype() -> None:
    model = nn.Sequential(nn.Conv2d(2, 3, 1), nn.Conv2d(3, 3, 1).half())
    model[0].weight.requires_grad_(False)
    assert profiling.count_parameters(model) == profiling.ParameterCount(total=9 + 12, trainable=3 + 12)
    assert profiling.tensor_bytes(model) == 9 * 4 + 12 * 2


# ---------------------------------------------------------------------------------------------
# Per-module breakdown


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.mix = nn.Conv2d(c, c, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(2)
        return self.mix(x) + ((flat @ flat.transpose(1, 2)) @ flat).view_as(x) * self.scale


class Net(nn.Module):
    """A U-Net-like toy: a ModuleList of levels (as NAFNet), a Sequential stage, a head."""

    def __init__(self) -> None:
        super().__init__()
        self.levels = nn.ModuleList([nn.Sequential(Block(4), Block(4)), nn.Sequential(Block(4))])
        self.head = nn.Conv2d(4, 2, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        for level in self.levels:
            x = level(x)
        return self.head(x)


def test_unit_paths_join_module_list_items_but_not_sequential_items() -> None:
    paths = profiling.unit_paths(Net())
    assert paths["levels"] == ("levels",)
    assert paths["levels.0"] == ("levels.0",)
    assert paths["levels.0.1.mix"] == ("levels.0", "1", "mix")
    assert paths["head"] == ("head",)


def test_breakdown_depth_one_lists_levels_with_shares() -> None:
    net = Net().eval()
    count = macs_of(net, (1, 4, 3, 3))
    block = 9 * 4 * 4 + 2 * 4 * 4 * 9  # 1x1 mix + the two products
    assert count.total == 3 * block + 9 * 2 * 4 * 9
    rows = {row.name: row for row in profiling.breakdown(net, count, depth=1)}
    assert rows.keys() == {"levels.0", "levels.1", "head"}
    assert rows["levels.0"].macs == 2 * block and rows["levels.0"].params == 2 * (1 + 16)
    assert rows["head"].macs == 9 * 2 * 4 * 9 and rows["head"].params == 2 * 4 * 9
    assert sum(row.macs_share for row in rows.values()) == pytest.approx(1.0)
    assert sum(row.params_share for row in rows.values()) == pytest.approx(1.0)
    assert rows["levels.0"].macs_share == pytest.approx(2 * block / count.total)


def test_breakdown_deeper_puts_own_work_of_a_parent_in_an_own_row_sorted_by_macs() -> None:
    net = Net().eval()
    count = macs_of(net, (1, 4, 3, 3))
    rows = profiling.breakdown(net, count, depth=3)
    by_name = {row.name: row for row in rows}
    # The products happen in Block.forward itself; its scale parameter is its own too.
    assert by_name["levels.0.1 (own)"].macs == 2 * 4 * 4 * 9
    assert by_name["levels.0.1 (own)"].params == 1
    assert by_name["levels.0.1.mix"].macs == 9 * 4 * 4
    assert by_name["head"].macs == 9 * 2 * 4 * 9  # a leaf shallower than depth keeps its name
    assert sum(row.macs for row in rows) == count.total
    assert [row.macs for row in rows] == sorted((row.macs for row in rows), reverse=True)


def test_restormer_depth_one_rows_are_its_stages() -> None:
    model = build_on_meta("restormer", "tiny")
    rows = profiling.breakdown(model, macs_of(model, (1, 3, 32, 32)), depth=1)
    assert {row.name for row in rows} == {name for name, _ in model.named_children()}
    assert sum(row.params for row in rows) == profiling.count_parameters(model).total


# ---------------------------------------------------------------------------------------------
# Targets and sizes


def test_resolve_target_from_arch_config_model_and_json() -> None:
    target = profiling.resolve_target(arch="nafnet", config="tiny")
    assert (target.label, target.in_channels, target.pad_multiple) == (
        "nafnet (tiny)",
        3,
        4,
    )
    custom = profiling.resolve_target(arch="restormer", config='{"dim": 8, "inp_channels": 1, "out_channels": 1}')
    assert (
        custom.label,
        custom.config["dim"],
        custom.in_channels,
        custom.pad_multiple,
    ) == ("restormer (custom)", 8, 1, 8)
    zoo = profiling.resolve_target(model="nafnet-gopro-width64")
    assert (zoo.arch, zoo.config["width"], zoo.weights) == (
        "nafnet-local",
        64,
        None,
    )  # TLC, as inference runs it


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({}, ConfigError),
        ({"arch": "nafnet", "model": "nafnet-sidd-width32"}, ConfigError),
        ({"config": "tiny"}, ConfigError),
        ({"arch": "nafnet", "config": "{not json"}, ConfigError),
        ({"arch": "nafnet", "config": '{"depth": 3}'}, ConfigError),
        ({"arch": "nafnett"}, UnknownModelError),
        ({"arch": "nafnet", "config": "tinny"}, UnknownModelError),
    ],
)
def test_resolve_target_rejects_bad_selections(kwargs: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        profiling.resolve_target(**kwargs)


def test_weights_are_loaded_strictly(tmp_path: Path) -> None:
    source = build_model("nafnet", "tiny")
    path = tmp_path / "tiny.pth"
    torch.save(source.state_dict(), path)
    target = profiling.resolve_target(arch="nafnet", config="tiny", weights=path)
    assert target.weights == str(path)
    assert torch.equal(target.descriptor.module.intro.weight, source.intro.weight)
    inferred = profiling.resolve_target(weights=path)  # architecture and config from the keys
    assert (inferred.arch, inferred.config) == ("nafnet", target.config)


@pytest.mark.parametrize(
    ("text", "size"),
    [("256", (256, 256)), ("720x1280", (720, 1280)), (" 64 X 32 ", (64, 32))],
)
def test_parse_size(text: str, size: tuple[int, int]) -> None:
    assert profiling.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "12x", "x12", "-4", "3.5", "64x0"])
def test_parse_size_rejects_non_sizes(text: str) -> None:
    with pytest.raises(ConfigError):
        profiling.parse_size(text)


def test_parse_sizes_and_padding_to_the_network_multiple() -> None:
    assert profiling.parse_sizes("128, 256,512x768") == [
        (128, 128),
        (256, 256),
        (512, 768),
    ]
    target = profiling.resolve_target(arch="restormer", config="tiny")
    assert profiling.input_shape(target, 2, (30, 33)) == (2, 3, 32, 40)


# ---------------------------------------------------------------------------------------------
# Latency, memory, and the whole profile


def test_latency_statistics_from_a_controlled_clock(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    durations_ms = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6]  # unordered on purpose
    ticks = itertools.chain.from_iterable((0.0, d / 1e3) for d in durations_ms)
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: next(ticks))
    calls = []
    latency = profiling.measure_latency(calls.append, torch.zeros(4, 3, 10, 20), warmup=3, repeats=10, pixels=150)
    assert len(calls) == 13
    assert latency.median_ms == pytest.approx(5.5)
    assert latency.p90_ms == pytest.approx(9.1)  # linear interpolation between 9 and 10
    assert latency.min_ms == pytest.approx(1.0)
    assert latency.images_per_second == pytest.approx(4 / 5.5e-3)
    assert latency.megapixels_per_second == pytest.approx(4 * 150 / 5.5e-3 / 1e6)


def test_cpu_peak_memory_comes_from_a_fresh_process() -> None:
    request = profiling.PeakRequest(
        arch="nafnet",
        config=profiling.resolve_target(arch="nafnet", config="tiny").config,
        input_shape=[1, 3, 512, 512],
        options=dataclasses.asdict(RunOptions(tile=512, overlap=0, tile_batch=1)),
        threads=1,
    )
    ballast = torch.ones(64 * 2**20)  # 256 MiB held by this process must not show up in the child's peak
    peak = profiling.measure_cpu_peak(request)
    del ballast
    assert peak.method == "cpu-rss-subprocess"
    assert peak.peak_bytes is not None
    # At least the input and the 4-channel intro activation (3 + 4 planes of 512x512 float32).
    assert 7 * 512 * 512 * 4 <= peak.peak_bytes < 200 * 2**20


def test_cuda_peak_reads_the_allocator_after_the_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    allocated = {"peak": 0}
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: allocated.update(peak=0))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: allocated["peak"])
    peak = profiling.measure_cuda_peak(lambda x: allocated.update(peak=12345), torch.zeros(1), torch.device("cpu"))
    assert peak == profiling.PeakMemory(peak_bytes=12345, method="cuda-allocator")


def test_profile_counts_times_and_reports_json_ready() -> None:
    target = profiling.resolve_target(arch="restormer", config="tiny")
    result = profiling.profile(
        target,
        size=(30, 32),
        batch=2,
        depth=2,
        device="cpu",
        warmup=0,
        repeats=2,
        memory=False,
    )
    assert result.macs.official.input_shape == (2, 3, 32, 32)
    assert result.macs.restorecli.total == macs_of(build_on_meta("restormer", "tiny"), (2, 3, 32, 32)).total
    assert result.device == "cpu" and len(result.sizes) == 1 and result.sizes[0].device == "cpu"
    timing = result.sizes[0].latency
    assert timing is not None and timing.repeats == 2 and timing.median_ms > 0
    assert any("30x32 padded to multiples of 8" in note for note in result.notes)
    data = result.to_dict()
    assert data["macs"]["flops"] == 2 * data["macs"]["macs"] == 2 * result.macs.official.total
    assert data["macs"]["counts"]["paper"]["macs"] == result.macs.paper == result.sizes[0].paper_macs
    assert data["sizes"][0]["flops"] == 2 * result.sizes[0].macs
    assert "FLOPs = 2 x MACs" in data["convention"]


def test_tiled_profile_runs_the_engine_and_sums_macs_over_tiles() -> None:
    target = profiling.resolve_target(arch="nafnet", config="tiny")
    result = profiling.profile(
        target,
        size=(64, 64),
        options=RunOptions(tile=32, overlap=8),
        device="cpu",
        warmup=0,
        repeats=1,
        memory=False,
    )
    # 64 px with 32 px tiles sharing at least 8: 3 tiles per axis, spread evenly as tiles of
    # ceil(56 / 3) + 8 = 27 -> 28 px (multiple 4) at 0, 16, 36.
    one_tile = macs_of(build_on_meta("nafnet", "tiny"), (1, 3, 28, 28))
    assert result.sizes[0].tiles == 9
    assert result.macs.official.total == result.sizes[0].macs == 9 * one_tile.total
    assert sum(row.macs for row in result.breakdown) == 9 * one_tile.total
    assert result.sizes[0].latency is not None and (result.tile, result.overlap) == (32, 8)
    assert any(note.startswith("tiled: ") for note in result.notes)


def test_a_tile_too_small_for_its_overlap_is_rejected() -> None:
    target = profiling.resolve_target(arch="nafnet", config="tiny")
    with pytest.raises(ConfigError, match="Expected a tile of at least"):
        profiling.profile(target, size=(64, 64), options=RunOptions(tile=8, overlap=8), latency=False, memory=False)


def test_profile_sizes_scale_macs_with_pixels_and_skip_runtime_when_asked() -> None:
    target = profiling.resolve_target(arch="nafnet", config="tiny")
    result = profiling.profile(target, sizes=[(16, 16), (32, 32), (64, 64)], latency=False, memory=False)
    assert result.device is None
    small, medium, large = (s.macs for s in result.sizes)
    # Linear in pixels, plus a constant: channel attention's 1x1 conv runs on pooled 1x1 maps.
    assert large - medium == 4 * (medium - small) > 0
    assert all(s.latency is None and s.memory is None for s in result.sizes)


def test_out_of_memory_at_one_size_is_reported_and_the_sweep_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = runtime.measure_latency

    def fails_when_large(module: nn.Module, x: Tensor, **kwargs: object) -> profiling.Latency:
        if x.shape[-1] > 16:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(module, x, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(report_module, "measure_latency", fails_when_large)
    target = profiling.resolve_target(arch="nafnet", config="tiny")
    result = profiling.profile(
        target,
        sizes=[(16, 16), (32, 32)],
        device="cpu",
        warmup=0,
        repeats=1,
        memory=False,
    )
    assert result.sizes[0].error is None and result.sizes[0].latency is not None
    assert result.sizes[1].error == "out of memory" and result.sizes[1].latency is None


@pytest.mark.parametrize(("device", "fallback"), [("auto", True), ("cpu", False)])
def test_passes_run_through_the_engine_with_its_fallback_policy_and_announcements_become_notes(
    monkeypatch: pytest.MonkeyPatch, device: str, fallback: bool
) -> None:
    real = runtime.restore_tensor
    seen: list[RunOptions] = []

    def announcing_runner(descriptor: ModelDescriptor, x: Tensor, options: RunOptions) -> Tensor:
        seen.append(options)
        logging.getLogger("restorecli.engine").warning("mps lacks an operator the model needs; continuing on cpu")
        return real(descriptor, x, options)

    monkeypatch.setattr(runtime, "restore_tensor", announcing_runner)
    target = profiling.resolve_target(arch="nafnet", config="tiny")
    result = profiling.profile(target, size=(16, 16), device=device, warmup=0, repeats=1, memory=False)
    assert result.device == "cpu" and result.sizes[0].latency is not None
    assert {options.fallback for options in seen} == {fallback}
    assert {(options.tile, options.overlap, options.tile_batch) for options in seen} == {(16, 0, 1)}  # one whole tile
    assert "16x16: mps lacks an operator the model needs; continuing on cpu" in result.notes


def test_profile_runs_the_zoo_descriptor_in_the_memory_format_inference_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    layouts: list[bool] = []
    real = report_module.instantiate

    def watched(target: profiling.ProfileTarget, device: torch.device) -> ModelDescriptor:
        descriptor = real(target, device)
        descriptor.module.register_forward_pre_hook(
            lambda module, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
        )
        return descriptor

    monkeypatch.setattr(report_module, "instantiate", watched)
    target = profiling.resolve_target(arch="nafnet", config="tiny")
    assert target.descriptor.channels_last  # the zoo's record, with the architecture's preference
    profiling.profile(target, size=(16, 16), device="cpu", warmup=1, repeats=1, memory=False)
    assert layouts == [True, True]


def test_only_the_zoo_builds_descriptors_and_the_product_never_imports_the_test_reference() -> None:
    package = Path(restorecli.__file__).parent
    sources = {path.relative_to(package).as_posix(): path.read_text() for path in package.rglob("*.py")}
    builders = sorted(name for name, text in sources.items() if "ModelDescriptor(" in text)
    assert builders and all(name.startswith("zoo/") for name in builders)
    imports = re.compile(
        r"^\s*(from restorecli\.testing\b|import restorecli\.testing\b|from restorecli import testing)", re.MULTILINE
    )
    importers = [name for name, text in sources.items() if imports.search(text)]
    assert all(name.startswith("testing/") for name in importers)


@pytest.mark.parametrize("kwargs", [{"batch": 0}, {"depth": 0}, {"repeats": 0}, {"warmup": -1}])
def test_profile_rejects_bad_settings(kwargs: dict[str, object]) -> None:
    target = profiling.resolve_target(arch="nafnet", config="tiny")
    with pytest.raises(ConfigError):
        profiling.profile(target, latency=False, memory=False, **kwargs)  # type: ignore[arg-type]


def test_a_precision_the_device_lacks_fails_before_anything_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "instantiate", lambda *args: pytest.fail("allocated the network"))
    target = profiling.resolve_target(arch="nafnet", config="tiny")
    with pytest.raises(ConfigError, match="Expected a precision cpu supports"):
        profiling.profile(target, device="cpu", options=RunOptions(precision="fp16"))


def test_profile_headlines_the_official_count_beside_the_paper_and_restorecli_counts() -> None:
    restormer = profiling.profile(
        profiling.resolve_target(arch="restormer", config="tiny"), size=(32, 32), latency=False, memory=False
    )
    reference = macs_of(official.OfficialForward(build_on_meta("restormer", "tiny")), (1, 3, 32, 32))
    assert restormer.macs.official.total == reference.total != restormer.macs.restorecli.total
    assert restormer.macs.paper == reference.by_operator["convolution"]
    assert sum(row.macs for row in restormer.breakdown) == reference.total  # the breakdown is the official one
    counts = restormer.to_dict()["macs"]["counts"]
    assert [counts[kind]["macs"] for kind in ("official", "paper", "restorecli")] == list(
        restormer.macs.totals().values()
    )
    nafnet = profiling.profile(
        profiling.resolve_target(arch="nafnet", config="tiny"), size=(32, 32), latency=False, memory=False
    )
    assert nafnet.macs.official == nafnet.macs.restorecli  # NAFNet's forward does the official arithmetic


# ---------------------------------------------------------------------------------------------
# Config and memory guards (before anything is allocated)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('{"width": -8}', "Expected integers from 1 to 65536 in --config, but got width=-8"),
        ('{"width": 0}', "but got width=0"),
        ('{"middle_blk_num": 100000}', "Expected integers from 0 to 65536 in --config, but got middle_blk_num=100000"),
        ('{"middle_blk_num": 1000, "enc_blk_nums": [30], "dec_blk_nums": [0]}', "at most 1024 blocks in all"),
        ('{"enc_blk_nums": [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]}', "but enc_blk_nums has 17"),
        ('{"enc_blk_nums": [1, -1], "dec_blk_nums": [1, 1]}', "but got enc_blk_nums=[1, -1]"),
        ('{"width": 4.5e300}', "but got width="),
    ],
)
def test_config_values_out_of_range_are_config_errors(config: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        profiling.resolve_target(arch="nafnet", config=config)


def test_a_config_the_network_rejects_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Expected a config restormer can be built from, but .*groups"):
        profiling.resolve_target(arch="restormer", config='{"ffn_expansion_factor": 0.01}')  # 0 hidden channels
    heads_misfit = profiling.resolve_target(arch="restormer", config='{"dim": 3, "heads": [2, 2, 2, 2]}')
    with pytest.raises(ConfigError, match=r"Expected restormer \(custom\) to run on a 1x3x8x8 input, but it failed"):
        profiling.profile(heads_misfit, size=(8, 8), latency=False, memory=False)


def test_a_huge_width_is_counted_on_meta_and_refused_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "instantiate", lambda *args: pytest.fail("allocated the network"))
    target = profiling.resolve_target(arch="nafnet", config='{"width": 20000}')
    counted = profiling.profile(target, size=(8, 8), latency=False, memory=False)
    assert counted.parameters.total > 10**9  # counting needs no memory
    monkeypatch.setattr(report_module, "free_memory", lambda device: 8 << 30)
    with pytest.raises(DeviceError, match=r"weights alone need 1\d\.\d GiB and 8\.0 GiB are free"):
        profiling.profile(target, size=(8, 8), device="cpu", repeats=1)


def test_sizes_past_the_free_memory_are_out_of_memory_rows_and_the_sweep_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = profiling.resolve_target(arch="nafnet", config="tiny")
    per_pixel = restorecli.engine.runner.estimate_bytes_per_pixel(target.descriptor)
    # Room for a 64x64 pass (plus weights and images), not for 100000x100000.
    monkeypatch.setattr(report_module, "free_memory", lambda device: int(per_pixel * 64 * 64 * 2) + (1 << 20))
    result = profiling.profile(
        target, sizes=[(64, 64), (100_000, 100_000)], device="cpu", warmup=0, repeats=1, memory=False
    )
    fits, huge = result.sizes
    assert fits.error is None and fits.latency is not None
    assert huge.latency is None and huge.error is not None
    assert re.fullmatch(r"out of memory: needs about \d+\.\d GiB, cpu has 0\.0 GiB free", huge.error)


def test_when_no_size_fits_nothing_is_allocated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report_module, "instantiate", lambda *args: pytest.fail("allocated the network"))
    monkeypatch.setattr(report_module, "free_memory", lambda device: 1 << 20)
    target = profiling.resolve_target(arch="nafnet", config="tiny")
    result = profiling.profile(target, size=(2048, 2048), device="cpu", repeats=1)
    assert result.sizes[0].error is not None and result.sizes[0].error.startswith("out of memory: needs about")


# ---------------------------------------------------------------------------------------------
# The official formulation's count, derived without running it, against flop_counter on it


@pytest.mark.parametrize(
    ("arch", "shape"),
    [
        ("restormer", (2, 3, 24, 40)),
        ("restormer", (1, 3, 56, 16)),
        ("nafnet", (1, 3, 27, 37)),  # odd: both forwards zero-pad to a multiple of 4 themselves
        ("nafnet", (2, 3, 33, 19)),
        ("nafnet-local", (1, 3, 67, 45)),  # past the 48-pixel TLC window: local pooling
    ],
)
@pytest.mark.parametrize("on_meta", [True, False])
def test_official_count_equals_flop_counter_on_the_official_formulation(
    arch: str, shape: tuple[int, ...], on_meta: bool
) -> None:
    model = build_model(arch, "tiny").eval()
    counts = profiling.count_macs_three_ways(model, shape, on_meta=on_meta)
    reference = macs_of(official.OfficialForward(model), shape, on_meta=on_meta)
    assert counts.official.total == reference.total
    assert counts.official.by_operator == reference.by_operator
    assert counts.paper == reference.by_operator["convolution"]
    assert counts.restorecli == macs_of(model, shape, on_meta=on_meta)
    assert sum(counts.official.by_module.values()) == counts.official.total


@pytest.mark.slow
def test_full_restormer_at_256_is_154_88_g_macs_and_140_99_g_by_the_paper_convention() -> None:
    model = build_on_meta("restormer", "deraining")
    counts = profiling.count_macs_three_ways(model, (1, 3, 256, 256))
    reference = macs_of(official.OfficialForward(model), (1, 3, 256, 256))
    assert counts.official.total == reference.total == 154_882_031_616
    assert counts.paper == reference.by_operator["convolution"] == 140_990_496_768
    assert counts.restorecli.total == 148_026_949_632


class Doubled(nn.Module):
    """A stand-in regrouped module: its forward does the work twice; its "official" cost once."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Conv2d(2, 2, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(self.inner(x))


def test_a_regrouped_module_is_replaced_by_its_official_cost_up_to_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from restorecli.profiling import formulations

    per_call = 5 * 5 * 2 * 2
    monkeypatch.setitem(formulations.OFFICIAL_COSTS, Doubled, lambda module, shapes, measured: {"convolution": 7})
    net = nn.Sequential(nn.Sequential(Doubled(), nn.Conv2d(2, 2, 1, bias=False)), nn.Conv2d(2, 2, 1, bias=False)).eval()
    counts = profiling.count_macs_three_ways(net, (1, 2, 5, 5))
    assert counts.restorecli.total == 4 * per_call
    assert counts.official.total == 2 * per_call + 7
    assert counts.official.by_module == {"0.0": 7, "0.1": per_call, "1": per_call}  # "0.0.inner" folded in


# ---------------------------------------------------------------------------------------------
# Product timer (the benchmark's conv/matmul efficiency)


def test_depthwise_convolutions_are_told_from_dense_ones() -> None:
    image = torch.empty(1, 48, 8, 8)
    assert profiling.is_depthwise("aten.convolution", (image, torch.empty(48, 1, 3, 3)))
    assert profiling.is_depthwise("aten.convolution", (image, torch.empty(96, 1, 3, 3)))  # channel multiplier 2
    assert not profiling.is_depthwise("aten.convolution", (image, torch.empty(96, 48, 1, 1)))
    grey = torch.empty(1, 1, 8, 8)
    assert not profiling.is_depthwise("aten.convolution", (grey, torch.empty(8, 1, 3, 3)))  # a grey image's first conv
    assert not profiling.is_depthwise("aten.mm", (torch.empty(4, 4), torch.empty(4, 4)))


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_product_timer_counts_what_flop_counter_counts_and_splits_depthwise(context) -> None:  # type: ignore[no-untyped-def]
    model = build_model("restormer", "tiny").eval()
    x = torch.rand(1, 3, 32, 32)
    # Depthwise FLOPs by hand: 2 x 9 per output value of every depthwise module, seen through the
    # official forward (the fast one runs some of them by parts, on weight slices: the same work).
    depthwise: list[int] = []
    hooks = [
        module.register_forward_hook(lambda m, i, o: depthwise.append(2 * 9 * o.numel()))
        for module in model.modules()
        if isinstance(module, nn.Conv2d) and module.groups == module.in_channels > 1
    ]
    with context():
        official.OfficialForward(model)(x)
    for hook in hooks:
        hook.remove()
    timer = profiling.ProductTimer()
    with context():
        with timer:
            out = model(x)
        expected = model(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)  # timing changes nothing
    assert timer.flops["product"] == macs_of(model, tuple(x.shape), on_meta=False).flops
    assert len(depthwise) > 0 and timer.flops["product"] - timer.flops["dense"] == sum(depthwise)
    assert timer.seconds["product"] > timer.seconds["dense"] > 0
    assert timer.gflops("product") > 0


# ---------------------------------------------------------------------------------------------
# Plot (matplotlib, the optional `plot` extra)


def test_plot_draws_a_png_of_latency_memory_and_macs_per_module(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    from restorecli.profiling import plot

    target = profiling.resolve_target(arch="nafnet", config="tiny")
    report = profiling.profile(target, sizes=[(16, 16), (32, 32)], device="cpu", warmup=0, repeats=1, memory=False)
    path = plot.plot_profile(report, tmp_path / "profile.png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (2200, 1600)  # 11 x 8 inches at 200 dpi
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # drawn, not a blank canvas


@pytest.mark.parametrize(
    ("name", "message"),
    [("profile.txt", "Expected a plot file ending in .png, .pdf, .svg"), ("missing/profile.png", "existing folder")],
)
def test_plot_paths_are_checked_before_any_work(tmp_path: Path, name: str, message: str) -> None:
    from restorecli.errors import OutputPathError
    from restorecli.profiling import plot

    with pytest.raises(OutputPathError, match=message):
        plot.check_plot_path(tmp_path / name)


def test_plot_without_matplotlib_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from restorecli.errors import MissingDependencyError
    from restorecli.profiling import plot

    monkeypatch.setattr(plot.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match=re.escape("pip install 'restorecli[plot]'")):
        plot.require_matplotlib()
