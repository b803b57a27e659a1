"""Streamed forwards equal the whole-image forwards (:mod:`restorecli.archs.streaming`).

Tiny random-weight models of every Restormer and NAFNet family, odd image sizes padded as the
engine pads them, strip heights down to the minimum: max |diff| <= 1e-4 on outputs in [0, 1]'s range.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from restorecli.archs import streaming
from restorecli.archs.nafnet import NAFNetLocal
from restorecli.archs.ops import aligned_channels
from restorecli.archs.restormer import FeedForward
from restorecli.archs.streaming import (
    largest_strip_height,
    minimum_strip_height,
    streamed_forward,
    streamed_peak_bytes,
    supports_streaming,
)
from restorecli.engine import runner
from restorecli.engine.options import RunOptions
from restorecli.engine.padding import pad_to_multiple
from restorecli.engine.runner import estimate_bytes_per_pixel, restore_tensor
from restorecli.errors import ConfigError
from restorecli.zoo.architectures import ARCHITECTURES, build_model, build_on_meta, resolve_config
from restorecli.zoo.descriptor import ModelDescriptor
from restorecli.zoo.loader import describe
from tests.variants import RESTORMER_VARIANTS

TOLERANCE = 1e-4
_TINY_RESTORMER = {"dim": 4, "num_blocks": [1, 1, 1, 2], "num_refinement_blocks": 1, "heads": [1, 1, 2, 2]}


def _randomised(model: nn.Module) -> nn.Module:
    """Norm scales, temperatures, biases and NAFNet's residual scales off their 1/0 initialisation.

    NAFNet's zero ``beta``/``gamma`` would make every block the identity, and the test vacuous.
    """
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("body.weight", "norm1.weight", "norm2.weight", "temperature")):
                parameter.uniform_(0.5, 2.0, generator=generator)
            elif name.endswith(("bias", "beta", "gamma")):
                parameter.normal_(0.0, 0.2, generator=generator)
    return model.eval()


def _image(channels: int, height: int, width: int, batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, channels, height, width, generator=torch.Generator().manual_seed(2))


def _assert_streams_exactly(model: nn.Module, x: torch.Tensor, strips: list[int]) -> None:
    with torch.inference_mode():
        expected = model(x)
        assert 0.05 < expected.std() and expected.abs().max() < 10  # a non-trivial output on [0, 1]'s scale
        for strip in strips:
            actual = streamed_forward(model, x, strip)
            assert actual.shape == expected.shape
            assert (actual - expected).abs().max() <= TOLERANCE, f"strip height {strip}"


@pytest.mark.parametrize("variant", RESTORMER_VARIANTS)
def test_restormer_streams_exactly(variant: str) -> None:
    model = _randomised(build_model("restormer", {**_TINY_RESTORMER, **RESTORMER_VARIANTS[variant]}))
    x = pad_to_multiple(_image(model.patch_embed.proj.in_channels, 37, 51), 8, "reflect")  # 40 x 56, as the engine pads
    _assert_streams_exactly(model, x, [minimum_strip_height(model), 4, 6, 10, 16, 64])


@pytest.mark.parametrize("pieces", [2, 3, 7])
def test_restormer_streams_exactly_in_pieces_across_the_width(pieces: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pieces as narrow as 5 columns: at 56 x 40 the levels are 56, 28, 14 and 7 wide, so each level
    # splits differently (7 pieces: 7, 5, 2 and 1), with halo columns on both sides of inner pieces.
    monkeypatch.setattr(streaming, "MINIMUM_PIECE_WIDTH", 5)
    model = _randomised(build_model("restormer", {**_TINY_RESTORMER, "bias": True, "heads": [2, 2, 4, 4]}))
    with torch.inference_mode():
        expected = model(_image(3, 40, 56))
        for strip in (2, 6, 64):
            actual = streamed_forward(model, _image(3, 40, 56), strip, pieces=pieces)
            assert (actual - expected).abs().max() <= TOLERANCE, (strip, pieces)
        # A contiguous input streamed channels-last (the engine's call: no channels-last copy of the image).
        laid_out = streamed_forward(model, _image(3, 40, 56), 6, pieces=pieces, channels_last=True)
        assert laid_out.is_contiguous(memory_format=torch.channels_last)
        assert (laid_out - expected).abs().max() <= TOLERANCE


@pytest.mark.parametrize("bias", [False, True])
def test_gdfn_with_zero_channels_appended_gives_the_same_result(bias: bool) -> None:
    ffn = FeedForward(8, 2.66, bias)  # hidden width int(8 * 2.66) = 21: 11 zero channels to 32
    with torch.no_grad():
        for parameter in ffn.parameters():
            parameter.uniform_(-0.5, 0.5)
    x = torch.randn(1, 8, 9, 11).contiguous(memory_format=torch.channels_last)
    assert (aligned_channels(21), aligned_channels(255), aligned_channels(256), aligned_channels(1021)) == (11, 1, 0, 3)
    with torch.inference_mode():
        aligned = streaming._aligned_feed_forward(ffn)
        gated = aligned.gated(x)
        assert gated.shape[1] == 32 and not gated[:, 21:].any()
        torch.testing.assert_close(gated[:, :21], ffn.gated(x), rtol=0, atol=1e-6)
        # The official formulation: project_out(gelu(x1) * x2) over the halves of one convolution.
        x1, x2 = ffn.dwconv(ffn.project_in(x)).chunk(2, dim=1)
        expected = ffn.project_out(F.gelu(x1) * x2)
        torch.testing.assert_close(aligned.project_out(gated), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ffn(x), expected, rtol=1e-5, atol=1e-5)
    # The module itself keeps its official shapes; an already aligned width is left as it is.
    assert ffn.project_out.weight.shape == (8, 21, 1, 1) and ffn.dwconv.groups == 42
    wide = FeedForward(16, 2.0, False)  # 32 hidden channels
    assert streaming._aligned_feed_forward(wide) is wide


def test_between_stages_runs_after_each_stage_of_blocks_and_each_resampling() -> None:
    restormer = _randomised(build_model("restormer", _TINY_RESTORMER))
    nafnet = _randomised(build_model("nafnet", resolve_config("nafnet", "tiny")))
    # Restormer: 8 stages, 3 downs, 2 up-and-reduce steps and the up into level 1; NAFNet: a stage,
    # a down and an up per level, and the middle stage.
    for model, steps in ((restormer, 8 + 3 + 3), (nafnet, 4 * len(nafnet.encoders) + 1)):
        calls: list[int] = []
        streamed_forward(model, _image(3, 16, 24), 4, between_stages=lambda calls=calls: calls.append(1))
        assert len(calls) == steps, type(model).__name__


def test_pieces_are_equal_column_ranges_no_narrower_than_the_minimum() -> None:
    plan = streaming._Plan(8, torch.float32, torch.float32, channels_last=False, pieces=4)
    assert plan.columns(1024) == [(0, 256), (256, 512), (512, 768), (768, 1024)]
    assert plan.columns(130) == [(0, 65), (65, 130)]  # two pieces of at least 64 columns
    assert plan.columns(100) == [(0, 100)]
    with pytest.raises(ConfigError, match="at least one piece"):
        streamed_forward(build_model("restormer", _TINY_RESTORMER).eval(), _image(3, 16, 16), 4, pieces=0)


@pytest.mark.parametrize("arch", ["nafnet", "nafnet-local"])
def test_nafnet_streams_exactly(arch: str) -> None:
    # 70 x 45 is no multiple of 4 (NAFNet pads inside) and exceeds the tiny TLC window (48): local pooling.
    model = _randomised(build_model(arch, "tiny"))
    _assert_streams_exactly(model, _image(3, 70, 45), [minimum_strip_height(model), 4, 6, 14, 128])


def test_tlc_streams_exactly_while_its_windows_cover_the_image() -> None:
    # At 30 x 45 the windows cover every level: TLC pools globally, streamed through sums.
    model = _randomised(build_model("nafnet-local", "tiny"))
    _assert_streams_exactly(model, _image(3, 30, 45), [2, 8])


def test_fast_tlc_streams_exactly() -> None:
    model = _randomised(
        build_model("nafnet-local", {**ARCHITECTURES["nafnet-local"].configs["tiny"], "fast_imp": True})
    )
    _assert_streams_exactly(model, _image(3, 70, 45), [2, 10])


@pytest.mark.parametrize("arch", ["restormer", "nafnet"])
def test_batches_and_channels_last_stream_exactly(arch: str) -> None:
    model = _randomised(build_model(arch, _TINY_RESTORMER if arch == "restormer" else "tiny"))
    x = _image(3, 32, 40, batch=2)
    with torch.inference_mode():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        actual = streamed_forward(model, x.contiguous(memory_format=torch.channels_last), 6)
    assert (actual - expected).abs().max() <= TOLERANCE


@pytest.mark.parametrize("arch", ["restormer", "nafnet"])
def test_autocast_bf16_streams_close_to_the_autocast_forward(arch: str) -> None:
    model = _randomised(build_model(arch, _TINY_RESTORMER if arch == "restormer" else "tiny"))
    x = _image(3, 32, 40)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(x).float()
        actual = streamed_forward(model, x, 4)
    assert actual.dtype == torch.float32
    assert (actual - expected).abs().max() < 0.05  # bf16 rounding of the maps, not a different result


def test_bf16_store_stays_close_to_fp32() -> None:
    model = _randomised(build_model("restormer", _TINY_RESTORMER))
    x = _image(3, 32, 40)
    with torch.inference_mode():
        exact = streamed_forward(model, x, 8)
        stored = streamed_forward(model, x, 8, store_dtype=torch.bfloat16)
    assert 0 < (stored - exact).abs().max() < 0.05


def test_every_registered_restormer_and_nafnet_config_streams() -> None:
    for name in ("restormer", "nafnet", "nafnet-local"):
        for config in ARCHITECTURES[name].configs:
            assert supports_streaming(build_on_meta(name, config)), (name, config)
    assert not supports_streaming(nn.Conv2d(3, 3, 3))


def test_invalid_requests_raise_config_errors() -> None:
    model = build_model("restormer", _TINY_RESTORMER).eval()
    with pytest.raises(ConfigError, match="even strip height"):
        streamed_forward(model, _image(3, 16, 16), 3)
    with pytest.raises(ConfigError, match="multiples of 8"):
        streamed_forward(model, _image(3, 20, 16), 4)
    with pytest.raises(ConfigError, match="Restormer or NAFNet"):
        streamed_forward(nn.Conv2d(3, 3, 3), _image(3, 16, 16), 4)


def test_output_is_an_inference_tensor_even_with_gradients_enabled() -> None:
    # Inference only: maps are overwritten in place, so there is never an autograd graph.
    model = build_model("nafnet", "tiny").eval()
    out = streamed_forward(model, _image(3, 16, 16), 4)
    assert out.is_inference() and not out.requires_grad


def test_peak_estimate_grows_with_the_strip_and_sizes_the_largest_strip() -> None:
    model = build_on_meta("restormer", "deraining")
    shape = (1, 3, 1024, 1024)
    small, large = (streamed_peak_bytes(model, shape, strip) for strip in (8, 64))
    assert small < large
    # The floor: [dec, enc1] at full resolution plus the other encoder levels, 2.875 * 48 channels.
    assert streamed_peak_bytes(model, shape, 0) > 2.875 * 48 * 4 * 1024 * 1024
    strip = largest_strip_height(model, shape, large)
    assert strip is not None and 64 <= strip <= 66
    assert streamed_peak_bytes(model, shape, strip) <= large
    assert largest_strip_height(model, shape, 10 << 40) == 1024  # never more than the image
    assert largest_strip_height(model, shape, small // 4) is None  # not even the minimum strip fits
    assert streamed_peak_bytes(model, shape, 8, store_dtype=torch.bfloat16) < small
    tlc = NAFNetLocal(width=16, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1])
    plain = build_model("nafnet", {"width": 16, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]})
    assert streamed_peak_bytes(tlc, shape, 8) > streamed_peak_bytes(plain, shape, 8)  # TLC pools whole maps


# ------------------------------------------------------------------------------------------------
# The engine streams instead of tiling


def _tiny_restormer_descriptor() -> ModelDescriptor:
    kwargs = resolve_config("restormer", _TINY_RESTORMER)
    return describe(_randomised(build_model("restormer", kwargs)), "tiny-restormer", "restormer", kwargs)


def _engine_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "restorecli.engine"]


def test_the_engine_streams_an_image_over_its_memory_budget_instead_of_tiling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    descriptor = _tiny_restormer_descriptor()
    x = _image(3, 197, 131)  # padded to 200 x 136: taller than one strip
    whole = restore_tensor(descriptor, x, RunOptions(tile=1 << 30, tile_batch=1))
    budget = streamed_peak_bytes(descriptor.module, (1, 3, 200, 136), 8)
    assert 200 * 136 * estimate_bytes_per_pixel(descriptor) > budget  # the whole image does not fit
    with caplog.at_level(logging.DEBUG, logger="restorecli.engine"):
        streamed = restore_tensor(descriptor, x, RunOptions(max_memory=budget))
    assert _engine_messages(caplog) == [
        "200x136 streams through tiny-restormer in 8-row strips, 1 piece(s) across"
    ]  # no tiling warning
    assert (streamed - whole).abs().max() <= TOLERANCE


def test_the_engine_tiles_when_asked_or_when_not_even_a_strip_fits(caplog: pytest.LogCaptureFixture) -> None:
    descriptor = _tiny_restormer_descriptor()
    x = _image(3, 200, 136)
    with caplog.at_level(logging.DEBUG, logger="restorecli.engine"):
        restore_tensor(descriptor, x, RunOptions(tile=64, overlap=16))
        assert not any("streams" in message for message in _engine_messages(caplog))
        minimum = streamed_peak_bytes(descriptor.module, (1, 3, 200, 136), 2)
        restore_tensor(descriptor, x, RunOptions(max_memory=minimum - 1))
    messages = _engine_messages(caplog)
    assert not any("streams" in message for message in messages)
    assert any("tiling at" in message for message in messages)  # the last resort, announced


def test_the_cpu_streams_in_cache_sized_pieces_and_accelerators_in_the_largest_strip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "available_memory", lambda device: 64 << 30)
    cpu = _tiny_restormer_descriptor()
    shape = (1, 3, 1024, 1000)
    # 1000 / 128 columns; the image fits whole (it streams for speed): no pages handed back between stages.
    expected = runner._Streaming(runner.STREAM_CPU_STRIP_ROWS, 8, release=False)
    assert runner._streaming(cpu, shape, RunOptions()) == expected
    assert runner._streaming(cpu, (1, 3, 64, 96), RunOptions()) == runner._Streaming(runner.STREAM_CPU_STRIP_ROWS, 1)
    # An accelerator (a meta-device model stands in for one: only its device type is read) runs an
    # image whole when it fits, else streams the tallest strip the budget allows, in one piece.
    kwargs = resolve_config("restormer", _TINY_RESTORMER)
    accelerator = describe(build_on_meta("restormer", kwargs), "tiny-restormer", "restormer", kwargs)
    assert accelerator.device.type == "meta"
    monkeypatch.setattr(runner, "estimate_bytes_per_pixel", lambda descriptor: 1000.0)
    assert runner._streaming(accelerator, shape, RunOptions()) is None
    budget = streamed_peak_bytes(accelerator.module, shape, 100)
    streaming = runner._streaming(accelerator, shape, RunOptions(max_memory=budget))
    assert streaming is not None and 96 <= streaming.strip <= 100 and streaming.pieces == 1
    assert runner._streaming(cpu, shape, RunOptions(tile=256)) is None  # tiles asked for


def test_pieces_bound_a_strips_temporaries_so_a_tight_budget_keeps_tall_strips(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = build_on_meta("restormer", "deraining")
    shape = (1, 3, 3000, 4000)  # 12 MP: 31 pieces of about 128 columns at level 1
    whole, pieces = (streamed_peak_bytes(model, shape, 64, torch.bfloat16, pieces=count) for count in (1, 31))
    floor = streamed_peak_bytes(model, shape, 0, torch.bfloat16, pieces=31)
    # One piece's temporaries instead of a strip's: the strip's part of the peak shrinks many times.
    assert (pieces - floor) * 4 < whole - floor
    # The deep levels are narrow: fewer, wider pieces there, so the estimate is not just divided by 31.
    assert pieces - floor > (whole - floor) / 31
    # The engine sizes CPU strips with the pieces it will use: a budget the strip-wide count would
    # refuse 64 rows still gets them.
    monkeypatch.setattr(runner, "available_memory", lambda device: 64 << 30)
    cpu = _tiny_restormer_descriptor()
    cpu_shape = (1, 3, 256, 2048)
    tiny_pieces = round(2048 / runner.STREAM_CPU_PIECE_WIDTH)
    budget = streamed_peak_bytes(cpu.module, cpu_shape, 64, pieces=tiny_pieces)
    assert budget < streamed_peak_bytes(cpu.module, cpu_shape, 64)
    monkeypatch.setattr(runner, "estimate_bytes_per_pixel", lambda descriptor: 1e6)  # never whole
    streaming = runner._streaming(cpu, cpu_shape, RunOptions(max_memory=budget))
    assert streaming == runner._Streaming(runner.STREAM_CPU_STRIP_ROWS, tiny_pieces, release=True)


def test_nafnet_runs_whole_on_the_cpu_when_it_fits_and_streams_when_it_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # NAFNet's streamed blocks compute their gated map twice: slower than the whole forward, so only
    # for memory. Restormer's pieces are faster on the CPU, so it streams even when it fits.
    kwargs = resolve_config("nafnet", "tiny")
    nafnet = describe(_randomised(build_model("nafnet", kwargs)), "tiny-nafnet", "nafnet", kwargs)
    assert not streaming.streams_faster_on_cpu(nafnet.module)
    assert streaming.streams_faster_on_cpu(_tiny_restormer_descriptor().module)
    shape = (1, 3, 400, 300)
    whole = 400 * 300 * runner.estimate_bytes_per_pixel(nafnet)
    monkeypatch.setattr(runner, "available_memory", lambda device: int(whole) + 1)
    assert runner._streaming(nafnet, shape, RunOptions()) is None
    streamed = runner._streaming(nafnet, shape, RunOptions(max_memory=int(whole) // 2))
    assert streamed is not None and streamed.strip == runner.STREAM_CPU_STRIP_ROWS
    assert streamed.release  # streaming for memory: freed heap pages go back between stages
