"""The runner: padding + tiling equivalence, memory bound, precision, simulated device failures, arrays."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from restorecli.engine import runner
from restorecli.engine.options import RunOptions
from restorecli.engine.runner import estimate_bytes_per_pixel, restore_array, restore_tensor
from restorecli.errors import ConfigError, DeviceError, ImageReadError
from restorecli.zoo import descriptor as descriptor_module
from restorecli.zoo.descriptor import ModelDescriptor

OVERLAP_16 = RunOptions(overlap=16)


def describe(
    module: nn.Module,
    *,
    in_channels: int = 3,
    out_channels: int = 3,
    multiple: int = 8,
    mode: str = "reflect",
    device: str = "cpu",
    auto_device: bool = False,
) -> ModelDescriptor:
    return ModelDescriptor(
        module=module.eval().to(device),
        name="test-model",
        arch="test",
        config={},
        task=None,
        in_channels=in_channels,
        out_channels=out_channels,
        pad_multiple=multiple,
        pad_mode=mode,
        auto_device=auto_device,
    )


class Residual(nn.Module):
    """x + body(x): keeps outputs near the input so clamping to [0, 1] rarely bites."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * self.body(x)


def conv_net(channels: int = 3) -> nn.Module:
    """Convolutions only; receptive radius 2 pixels."""
    body = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.GELU(), nn.Conv2d(8, channels, 3, padding=1))
    return Residual(body)


def strided_net() -> nn.Module:
    """Local but down/up-sampling (like a U-Net level): tiles must start on multiples of 2 to match."""
    return Residual(
        nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.Conv2d(8, 12, 1),
            nn.PixelShuffle(2),
        )
    )


def official(descriptor: ModelDescriptor, x: torch.Tensor) -> torch.Tensor:
    """The official test-script procedure: pad bottom/right, run the whole image, crop, clamp."""
    height, width = x.shape[-2:]
    multiple = descriptor.pad_multiple
    pad = (0, -width % multiple, 0, -height % multiple)
    with torch.no_grad():
        return descriptor.module(F.pad(x, pad, mode=descriptor.pad_mode))[..., :height, :width].clamp(0, 1)


class Recorder(nn.Module):
    """Wraps a model; records each forward input shape; while on ``fails_on``, raises ``error()`` for
    forward passes of more than ``limit`` pixels (batch x height x width)."""

    def __init__(
        self,
        inner: nn.Module,
        *,
        fails_on: str = "",
        limit: int = 0,
        error: Callable[[], Exception] = lambda: torch.cuda.OutOfMemoryError("CUDA out of memory."),
        where: str = "cpu",
    ) -> None:
        super().__init__()
        self.inner = inner
        self.fails_on, self.limit, self.error, self.where = fails_on, limit, error, where
        self.shapes: list[tuple[int, ...]] = []

    def to(self, device: torch.device | str, *args: object, **kwargs: object) -> Recorder:  # type: ignore[override]
        self.where = torch.device(device).type
        return super().to(device, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        if self.where == self.fails_on and x.shape[0] * x.shape[-2] * x.shape[-1] > self.limit:
            raise self.error()
        return self.inner(x)


def _is_accelerator(value: object) -> bool:
    return isinstance(value, (str, torch.device)) and str(value).split(":")[0] in ("cuda", "mps")


@pytest.fixture
def host_as_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate an accelerator on this CPU machine: tensors sent to cuda/mps stay in host memory, and a
    model's device is where its Recorder believes it is (real parameters stay on the CPU)."""
    real_to = torch.Tensor.to
    real_device = descriptor_module.module_device

    def module_device(module: nn.Module) -> torch.device:
        return torch.device(module.where) if isinstance(module, Recorder) else real_device(module)

    monkeypatch.setattr(descriptor_module, "module_device", module_device)

    def to(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        args = tuple("cpu" if _is_accelerator(arg) else arg for arg in args)
        if _is_accelerator(kwargs.get("device")):
            kwargs["device"] = "cpu"
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)


@pytest.fixture
def simulated_cuda(monkeypatch: pytest.MonkeyPatch, host_as_accelerator: None) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8 << 30, 16 << 30))
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def simulated_mps(monkeypatch: pytest.MonkeyPatch, host_as_accelerator: None) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: 8 << 30)
    monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: 0)
    monkeypatch.setattr(torch.mps, "empty_cache", lambda: None)


@pytest.mark.parametrize(
    ("make", "multiple", "mode"),
    [(conv_net, 8, "reflect"), (strided_net, 16, "constant"), (strided_net, 4, "reflect")],
)
def test_tiled_equals_untiled_for_local_models(make: Callable[[], nn.Module], multiple: int, mode: str) -> None:
    descriptor = describe(make(), multiple=multiple, mode=mode)
    x = torch.rand(2, 3, 67, 93)
    untiled = restore_tensor(descriptor, x)
    tiled = restore_tensor(descriptor, x, RunOptions(tile=48, overlap=32, tile_batch=3))
    torch.testing.assert_close(untiled, official(descriptor, x), rtol=0, atol=1e-6)
    torch.testing.assert_close(tiled, untiled, rtol=0, atol=1e-5)
    assert tiled.shape == (2, 3, 67, 93) and tiled.dtype == torch.float32


def test_device_memory_is_bounded_by_the_tile() -> None:
    model = Recorder(conv_net())
    restore_tensor(describe(model), torch.rand(1, 3, 200, 120), RunOptions(tile=48, overlap=16, tile_batch=2))
    assert max(batch * height * width for batch, _, height, width in model.shapes) <= 2 * 48 * 48


def test_automatic_tiles_fit_the_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    model = Recorder(conv_net())
    descriptor = describe(model)
    per_pixel = estimate_bytes_per_pixel(descriptor)
    monkeypatch.setattr(runner, "available_memory", lambda device: int(per_pixel * 64 * 64))
    x = torch.rand(1, 3, 150, 170)
    result = restore_tensor(descriptor, x, OVERLAP_16)
    assert max(batch * height * width for batch, _, height, width in model.shapes) <= 64 * 64
    assert len(model.shapes) > 4  # it did tile
    torch.testing.assert_close(result, official(descriptor, x), rtol=0, atol=1e-5)


class WeightSliceNet(nn.Module):
    """Its widest map comes from a functional convolution through a weight slice, as GDFN's halves do."""

    def __init__(self) -> None:
        super().__init__()
        self.wide = nn.Conv2d(3, 40, 1)
        self.narrow = nn.Conv2d(20, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.narrow(nn.functional.conv2d(x, self.wide.weight[:20], self.wide.bias[:20]))


def test_the_memory_estimate_sees_functional_convolutions() -> None:
    # No module hook sees the 20-channel half (``wide`` is never called): 20 x 4 bytes per pixel.
    assert estimate_bytes_per_pixel(describe(WeightSliceNet())) == runner._ACTIVATION_FACTOR * 20 * 4


def test_automatic_tiling_is_announced_once_per_model(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    descriptor = describe(conv_net())
    per_pixel = estimate_bytes_per_pixel(descriptor)
    monkeypatch.setattr(runner, "available_memory", lambda device: int(per_pixel * 64 * 64))
    restore_tensor(descriptor, torch.rand(1, 3, 150, 170), OVERLAP_16)
    assert "sees each tile rather than the whole image" in caplog.text
    caplog.clear()
    restore_tensor(descriptor, torch.rand(1, 3, 150, 170), OVERLAP_16)
    assert not caplog.records  # once per model, not once per image of a batch


def test_models_run_whole_when_the_free_memory_allows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # No fixed CPU cap: tiling would change the output.
    model = Recorder(conv_net())
    descriptor = describe(model)
    per_pixel = estimate_bytes_per_pixel(descriptor)
    monkeypatch.setattr(runner, "available_memory", lambda device: int(per_pixel * 160 * 176) + 1)
    model.shapes.clear()  # the probe's pass
    restore_tensor(descriptor, torch.rand(1, 3, 150, 170), OVERLAP_16)
    assert model.shapes == [(1, 3, 152, 176)] and not caplog.records


def test_max_memory_caps_automatic_tiles(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    model = Recorder(conv_net())
    descriptor = describe(model)
    per_pixel = estimate_bytes_per_pixel(descriptor)
    monkeypatch.setattr(runner, "available_memory", lambda device: 1 << 40)
    capped = RunOptions(overlap=16, max_memory=int(per_pixel * 64 * 64))
    restore_tensor(descriptor, torch.rand(1, 3, 150, 170), capped)
    assert max(batch * height * width for batch, _, height, width in model.shapes) <= 64 * 64
    assert "sees each tile rather than the whole image" in caplog.text and "--max-memory" in caplog.text


def test_bytes_per_pixel_estimate_scales_with_the_widest_layer() -> None:
    narrow = describe(Residual(nn.Conv2d(3, 3, 3, padding=1)))
    wide = describe(Residual(nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 3, 3, padding=1))))
    # The widest layer has 64 float32 channels at full resolution.
    assert estimate_bytes_per_pixel(wide) == runner._ACTIVATION_FACTOR * 64 * 4
    assert estimate_bytes_per_pixel(narrow) < estimate_bytes_per_pixel(wide)


def test_simulated_cuda_out_of_memory_retries_with_smaller_tiles(
    simulated_cuda: None, caplog: pytest.LogCaptureFixture
) -> None:
    x = torch.rand(1, 3, 67, 93)  # padded to 72 x 96 = 6912 pixels
    inner = conv_net()
    model = Recorder(inner, fails_on="cuda", limit=3000, where="cuda")
    descriptor = describe(model, device="cuda")
    with caplog.at_level(logging.WARNING, logger="restorecli.engine"):
        result = restore_tensor(descriptor, x, OVERLAP_16)
    torch.testing.assert_close(result, official(describe(inner), x), rtol=0, atol=1e-5)
    assert descriptor.device.type == "cuda"
    assert (1, 3, 72, 96) in model.shapes and model.shapes[-1] == (1, 3, 48, 48)
    assert [record.getMessage() for record in caplog.records] == [
        "cuda ran out of memory (untiled); restored with 48-pixel tiles"
    ]


def test_simulated_cuda_out_of_memory_falls_back_to_cpu_when_placed_by_auto(
    simulated_cuda: None, caplog: pytest.LogCaptureFixture
) -> None:
    inner = conv_net()
    descriptor = describe(Recorder(inner, fails_on="cuda", limit=0, where="cuda"), device="cuda", auto_device=True)
    x = torch.rand(1, 3, 67, 93)
    with caplog.at_level(logging.WARNING, logger="restorecli.engine"):
        result = restore_tensor(descriptor, x, OVERLAP_16)
        again = restore_tensor(descriptor, x, OVERLAP_16)
    torch.testing.assert_close(result, official(describe(inner), x), rtol=0, atol=1e-5)
    torch.testing.assert_close(again, result, rtol=0, atol=0)
    assert descriptor.device == torch.device("cpu")
    assert len(caplog.records) == 1  # announced once; later calls start on the CPU
    assert caplog.records[0].getMessage().startswith("cuda ran out of memory even with")
    assert caplog.records[0].getMessage().endswith("; continuing on cpu")


@pytest.mark.filterwarnings("ignore:User provided device_type of 'cuda'")
def test_fp16_fallback_to_cpu_switches_to_fp32(simulated_cuda: None, caplog: pytest.LogCaptureFixture) -> None:
    descriptor = describe(Recorder(conv_net(), fails_on="cuda", limit=0, where="cuda"), device="cuda")
    options = RunOptions(precision="fp16", fallback=True)
    with caplog.at_level(logging.WARNING, logger="restorecli.engine"):
        result = restore_tensor(descriptor, torch.rand(1, 3, 32, 32), options)
        again = restore_tensor(descriptor, torch.rand(1, 3, 32, 32), options)  # the next file of a batch
    assert result.dtype == again.dtype == torch.float32 and descriptor.device.type == "cpu"
    assert len(caplog.records) == 1  # said once, at the move
    assert caplog.records[0].getMessage().endswith("continuing on cpu in fp32 (cpu has no fp16)")
    with pytest.raises(ConfigError, match="precision cpu supports"):  # asked for on the CPU itself: refused
        restore_tensor(describe(conv_net()), torch.rand(1, 3, 32, 32), RunOptions(precision="fp16"))


@pytest.mark.parametrize(
    ("auto_device", "options", "reason"),
    [
        (False, RunOptions(), "a device chosen explicitly is never replaced (auto allows a fallback)"),
        (True, RunOptions(fallback=False), "fallback is off"),
        (False, RunOptions(fallback=False), "fallback is off"),
    ],
)
def test_an_explicit_device_or_no_fallback_raises_a_device_error(
    simulated_cuda: None, auto_device: bool, options: RunOptions, reason: str
) -> None:
    descriptor = describe(
        Recorder(conv_net(), fails_on="cuda", limit=0, where="cuda"), device="cuda", auto_device=auto_device
    )
    with pytest.raises(DeviceError, match="Expected test-model to run on cuda, but cuda ran out of memory") as error:
        restore_tensor(descriptor, torch.rand(1, 3, 32, 32), options)
    assert descriptor.device.type == "cuda"
    assert str(error.value).endswith(f"ran out of memory even with the probe; {reason}")


@pytest.mark.parametrize(
    "message",
    [
        "DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes",  # Linux, macOS
        "[enforce fail at alloc_cpu.cpp:116] data. DefaultCPUAllocator: not enough memory: you tried to allocate 1 bytes.",
    ],
    ids=["posix", "windows"],
)
def test_cpu_out_of_memory_with_nowhere_to_go_is_a_device_error(message: str) -> None:
    def error() -> Exception:
        return RuntimeError(message)

    model = Recorder(conv_net(), fails_on="cpu", limit=100, error=error)
    with pytest.raises(DeviceError, match="but cpu ran out of memory even with 16-pixel tiles$"):
        restore_tensor(describe(model), torch.rand(1, 3, 64, 64), RunOptions(tile=64, tile_batch=1, overlap=8))


def test_simulated_mps_missing_operator_falls_back_to_cpu(
    simulated_mps: None, caplog: pytest.LogCaptureFixture
) -> None:
    inner = conv_net()
    message = "The operator 'aten::upsample_bicubic2d.out' is not currently implemented for the MPS device."
    model = Recorder(inner, fails_on="mps", error=lambda: NotImplementedError(message), where="mps")
    descriptor = describe(model, device="mps", auto_device=True)
    x = torch.rand(1, 3, 40, 50)
    with caplog.at_level(logging.WARNING, logger="restorecli.engine"):
        result = restore_tensor(descriptor, x)
    torch.testing.assert_close(result, official(describe(inner), x), rtol=0, atol=1e-6)
    assert descriptor.device == torch.device("cpu") and model.where == "cpu"
    assert [record.getMessage() for record in caplog.records] == [
        f"mps lacks an operator the model needs ({message}); continuing on cpu"
    ]


def _streams_through(monkeypatch: pytest.MonkeyPatch, model: Recorder) -> None:
    """Let ``model`` take the streamed path, its streamed forward being its whole forward."""
    monkeypatch.setattr(
        runner, "_streaming", lambda descriptor, shape, options, whole_failed=False: runner._Streaming(8, 1)
    )
    monkeypatch.setattr(runner, "streamed_forward", lambda module, x, *args, **kwargs: module(x))


def test_a_missing_operator_while_streaming_falls_back_to_cpu(
    simulated_mps: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    message = "The operator 'aten::foo' is not currently implemented for the MPS device."
    model = Recorder(conv_net(), fails_on="mps", error=lambda: NotImplementedError(message), where="mps")
    _streams_through(monkeypatch, model)
    descriptor = describe(model, device="mps", auto_device=True)
    x = torch.rand(1, 3, 40, 48)
    with caplog.at_level(logging.WARNING, logger="restorecli.engine"):
        result = restore_tensor(descriptor, x)
    torch.testing.assert_close(result, official(describe(model.inner), x), rtol=0, atol=1e-6)
    assert descriptor.device == torch.device("cpu")
    assert [r.getMessage() for r in caplog.records] == [
        f"mps lacks an operator the model needs ({message}); continuing on cpu"
    ]


def test_out_of_memory_in_the_streaming_probe_leads_to_tiles(
    simulated_cuda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = Recorder(conv_net(), where="cuda")

    def probe_fails(descriptor: object, shape: object, options: object, whole_failed: bool = False) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(runner, "_streaming", probe_fails)
    x = torch.rand(1, 3, 40, 48)
    result = restore_tensor(describe(model, device="cuda"), x)
    torch.testing.assert_close(result, official(describe(model.inner), x), rtol=0, atol=1e-6)
    assert model.shapes  # the tiled path ran the model


def test_a_whole_forward_out_of_memory_streams_before_it_tiles(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The estimate let the whole image run and it ran out of memory: a streamable model streams (its
    exact output) instead of falling to tiles, which change it."""
    model = Recorder(conv_net(), fails_on="cpu", limit=4000, error=lambda: RuntimeError("can't allocate memory"))
    asked: list[bool] = []

    def streaming(descriptor: object, shape: object, options: object, whole_failed: bool = False) -> object:
        asked.append(whole_failed)
        return runner._Streaming(8, 1) if whole_failed else None  # fits whole, as far as the estimate knows

    monkeypatch.setattr(runner, "_streaming", streaming)
    monkeypatch.setattr(runner, "streamed_forward", lambda module, x, *args, **kwargs: module.inner(x))
    x = torch.rand(1, 3, 64, 80)
    with caplog.at_level(logging.WARNING, logger="restorecli.engine"):
        result = restore_tensor(describe(model), x)
    torch.testing.assert_close(result, official(describe(model.inner), x), rtol=0, atol=1e-6)
    assert asked == [False, True] and model.shapes[-1] == (1, 3, 64, 80)  # one whole try, no tiles
    assert [r.getMessage() for r in caplog.records] == [
        "cpu ran out of memory on the whole image; streamed it instead (the same output)"
    ]


def test_other_errors_are_not_swallowed() -> None:
    model = Recorder(conv_net(), fails_on="cpu", error=lambda: RuntimeError("boom"))
    with pytest.raises(RuntimeError, match="boom"):
        restore_tensor(describe(model), torch.rand(1, 3, 16, 16))


def test_bf16_autocast_on_cpu_is_close_to_fp32() -> None:
    descriptor = describe(conv_net())
    seen: list[torch.dtype] = []
    descriptor.module.body[0].register_forward_hook(lambda _m, _i, output: seen.append(output.dtype))
    x = torch.rand(1, 3, 40, 40)
    fp32 = restore_tensor(descriptor, x, RunOptions(tile_batch=1, tile=64))
    bf16 = restore_tensor(descriptor, x, RunOptions(tile_batch=1, tile=64, precision="bf16"))
    assert seen == [torch.float32, torch.bfloat16]
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, fp32, rtol=0, atol=2e-2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp16"}, "precision cpu supports"),
        ({"tile": 32, "overlap": 32}, "Expected a tile of at least 40 pixels"),
        ({"overlap": -1}, "overlap of 0 or more"),
        ({"tile_batch": 0}, "at least one tile per batch"),
        ({"tile": 0}, "positive tile size"),
        ({"precision": "fp8"}, "precision among fp32, bf16, fp16"),
        ({"max_memory": 0}, "positive memory cap"),
    ],
)
def test_bad_options_fail_before_any_model_work(kwargs: dict[str, object], message: str) -> None:
    model = Recorder(conv_net())
    with pytest.raises(ConfigError, match=message):
        restore_tensor(describe(model), torch.rand(1, 3, 100, 100), RunOptions(**kwargs))  # type: ignore[arg-type]
    assert model.shapes == []


def test_wrong_input_channels_or_output_shape_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"Expected a float tensor \(N, 3, H, W\) for test-model"):
        restore_tensor(describe(conv_net()), torch.rand(1, 1, 16, 16))
    with pytest.raises(ConfigError, match=r"Expected model output of shape \(1, 1, 16, 16\)"):
        restore_tensor(
            describe(conv_net(), out_channels=1), torch.rand(1, 3, 16, 16), RunOptions(tile=64, tile_batch=1)
        )


# --- arrays --------------------------------------------------------------------------------------


class Invert(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1 - x


def pointwise(weight: list[list[float]], bias: list[float]) -> nn.Module:
    """out_c = sum_k weight[c][k] * x_k + bias[c] at every pixel."""
    conv = nn.Conv2d(len(weight[0]), len(weight), 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor(weight)[:, :, None, None])
        conv.bias.copy_(torch.tensor(bias))
    return conv


def _pixels(shape: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.random.default_rng(0).integers(0, np.iinfo(dtype).max, size=shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize(
    ("shape", "dtype", "channels"),
    [((67, 93), np.uint8, 1), ((67, 93, 3), np.uint8, 3), ((67, 93, 3), np.uint16, 3), ((31, 17), np.uint16, 1)],
)
def test_identity_model_round_trips_grey_rgb_and_16_bit(shape: tuple[int, ...], dtype: type, channels: int) -> None:
    array = _pixels(shape, dtype)
    restored = restore_array(describe(nn.Identity(), in_channels=channels, out_channels=channels), array)
    assert restored.dtype == dtype
    np.testing.assert_array_equal(restored, array)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_rgba_alpha_passes_through_unchanged(dtype: type) -> None:
    array = _pixels((20, 30, 4), dtype)
    restored = restore_array(describe(Invert()), array)
    np.testing.assert_array_equal(restored[:, :, 3], array[:, :, 3])
    np.testing.assert_array_equal(restored[:, :, :3], np.iinfo(dtype).max - array[:, :, :3])


def test_grey_model_on_rgb_restores_each_channel() -> None:
    array = _pixels((24, 40, 3), np.uint8)
    restored = restore_array(describe(pointwise([[0.5]], [0.25]), in_channels=1, out_channels=1), array)
    expected = np.clip(np.round((array / 255 * 0.5 + 0.25) * 255), 0, 255)
    assert restored.shape == (24, 40, 3)
    assert np.abs(restored.astype(int) - expected).max() <= 1


def test_rgb_model_on_grey_replicates_then_averages() -> None:
    array = _pixels((24, 40), np.uint16)
    weight = [[0.2, 0.3, 0.1], [0.0, 0.9, 0.0], [0.5, 0.0, 0.1]]
    restored = restore_array(describe(pointwise(weight, [0.0, 0.1, -0.1])), array)
    # Every output channel c sees g in all three inputs: clip(row sum_c * g + b_c), then the mean over c.
    grey = array / 65535
    channels = [np.clip(sum(row) * grey + bias, 0, 1) for row, bias in zip(weight, [0.0, 0.1, -0.1])]
    expected = np.round(np.mean(channels, axis=0) * 65535)
    assert restored.shape == (24, 40) and restored.dtype == np.uint16
    assert np.abs(restored.astype(np.int64) - expected).max() <= 1


def test_rgb_with_equal_channels_is_restored_as_grey_and_stays_grey() -> None:
    grey = _pixels((24, 40), np.uint8)
    array = np.repeat(grey[:, :, None], 3, axis=2)
    weight = [[0.2, 0.3, 0.1], [0.0, 0.9, 0.0], [0.5, 0.0, 0.1]]
    restored = restore_array(describe(pointwise(weight, [0.0, 0.1, -0.1])), array)
    as_grey = restore_array(describe(pointwise(weight, [0.0, 0.1, -0.1])), grey)
    assert restored.shape == (24, 40, 3)
    for channel in range(3):
        np.testing.assert_array_equal(restored[:, :, channel], as_grey)
    one_channel = restore_array(describe(pointwise([[0.5]], [0.25]), in_channels=1, out_channels=1), array)
    assert (one_channel == one_channel[:, :, :1]).all()
    # Channels that differ anywhere keep the colour path: the model's three outputs differ.
    array[0, 0, 1] ^= 1
    colour = restore_array(describe(pointwise(weight, [0.0, 0.1, -0.1])), array)
    assert not (colour[:, :, 0] == colour[:, :, 1]).all()


def test_dual_pixel_six_channels_in_rgb_out() -> None:
    left, right = _pixels((16, 24, 3), np.uint8), _pixels((16, 24, 3), np.uint8)[::-1]
    mean_of_views = pointwise([[0.5 if k % 3 == c else 0.0 for k in range(6)] for c in range(3)], [0.0, 0.0, 0.0])
    descriptor = describe(mean_of_views, in_channels=6, out_channels=3)
    restored = restore_array(descriptor, np.concatenate([left, right], axis=2))
    expected = (left.astype(float) + right) / 2
    assert restored.shape == (16, 24, 3)
    assert np.abs(restored - expected).max() <= 1


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((8, 8, 6), np.uint8), r"Expected an image with 3 colour channel\(s\)"),
        (np.zeros((8, 8, 3), np.float32), "Expected \\(H, W\\[, C\\]\\) uint8 or uint16 pixels, but got float32"),
        (np.zeros((2, 8, 8, 3), np.uint8), "uint8 or uint16 pixels, but got uint8 \\(2, 8, 8, 3\\)"),
    ],
)
def test_unusable_arrays_are_rejected(array: np.ndarray, message: str) -> None:
    with pytest.raises(ImageReadError, match=message):
        restore_array(describe(conv_net()), array)


# --- non-finite guard ----------------------------------------------------------------------------


class OverflowsInHalf(nn.Module):
    """Returns Inf (and one NaN) under autocast, the true result in fp32: a simulated fp16 overflow."""

    def __init__(self) -> None:
        super().__init__()
        self.body = conv_net()
        self.passes: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        autocast = torch.is_autocast_enabled(x.device.type)
        self.passes.append(autocast)
        out = self.body(x)
        if autocast:
            out = out * float("inf")
            out[..., 0, 0] = float("nan")
        return out


def test_a_non_finite_half_precision_tile_is_run_again_in_fp32(caplog: pytest.LogCaptureFixture) -> None:
    model = OverflowsInHalf()
    descriptor = describe(model)
    x = torch.rand(1, 3, 40, 60)
    fp32 = restore_tensor(descriptor, x, RunOptions(tile=40, overlap=16, tile_batch=1))
    model.passes.clear()
    with caplog.at_level(logging.WARNING, logger="restorecli.engine"):
        bf16 = restore_tensor(descriptor, x, RunOptions(tile=40, overlap=16, tile_batch=1, precision="bf16"))
        restore_tensor(descriptor, x, RunOptions(tile=40, overlap=16, tile_batch=1, precision="bf16"))
    assert model.passes[:4] == [True, False, True, False]  # every tile: half, then fp32 again
    torch.testing.assert_close(bf16, fp32, rtol=0, atol=0)
    assert [record.getMessage() for record in caplog.records] == [
        "test-model produced NaN or Inf in bf16 on cpu; such tiles are run again in fp32"
    ]  # once per model, however many tiles and images


def test_a_finite_half_precision_output_is_kept() -> None:
    model = Recorder(conv_net())
    restore_tensor(describe(model), torch.rand(1, 3, 40, 40), RunOptions(tile=64, tile_batch=1, precision="bf16"))
    assert len(model.shapes) == 1


def half_overflow_net() -> nn.Module:
    """The identity in fp32; in fp16 its first 1x1 convolution (x 1e5) passes 65504, the largest half."""
    up, down = nn.Conv2d(3, 3, 1, bias=False), nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        up.weight.copy_(torch.eye(3)[:, :, None, None] * 1e5)
        down.weight.copy_(torch.eye(3)[:, :, None, None] * 1e-5)
    return nn.Sequential(up, down)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device: fp16 autocast runs only there (no fp16 on the CPU)"
)
def test_cuda_fp16_overflow_is_rerun_in_fp32(caplog: pytest.LogCaptureFixture) -> None:
    descriptor = describe(half_overflow_net(), device="cuda")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        assert not torch.isfinite(descriptor.module(x.cuda())).all()  # the model does overflow in fp16
    with caplog.at_level(logging.WARNING, logger="restorecli.engine"):
        result = restore_tensor(descriptor, x, RunOptions(precision="fp16"))
    torch.testing.assert_close(result, x, rtol=1e-4, atol=1e-4)
    assert "produced NaN or Inf in fp16 on cuda" in caplog.text


# --- options record and descriptor device --------------------------------------------------------


def test_the_descriptor_device_is_read_from_the_parameters() -> None:
    descriptor = describe(conv_net())
    assert descriptor.device == torch.device("cpu")
    descriptor.module.to("meta")
    assert descriptor.device == torch.device("meta")  # no bookkeeping to forget
    assert describe(Invert()).device == torch.device("cpu")  # no tensors at all: the CPU


@pytest.mark.parametrize(("tile", "passes"), [(100, [(1, 3, 104, 104)]), (120, [(1, 3, 104, 104)]), (96, None)])
def test_a_tile_covering_the_image_but_its_padding_runs_it_whole(
    tile: int, passes: list[tuple[int, ...]] | None
) -> None:
    """100x100 pads to 104x104 (multiple 8): a tile of 100 covers the image and runs it whole, as a larger
    one does; 96 is a padding multiple short of the padded side and tiles."""
    model = Recorder(conv_net())
    restore_tensor(describe(model, multiple=8), torch.rand(1, 3, 100, 100), RunOptions(tile=tile, overlap=16))
    forwards = [shape for shape in model.shapes if shape[-1] > 32]  # leave out the memory probe
    if passes is not None:
        assert forwards == passes
    else:
        assert len(forwards) > 1 and all(shape[-1] <= 96 for shape in forwards)
