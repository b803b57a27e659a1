"""Super-resolution on the engine: scaled outputs, tiles blended in output coordinates, size rules,
alpha, ``restore upscale``, and outputs equal to spandrel's own for the checkpoints it loads."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from restorecli import restore_image
from restorecli.cli.app import app
from restorecli.engine.options import RunOptions
from restorecli.engine.padding import pad_to, padded_size
from restorecli.engine.runner import restore_array, restore_tensor
from restorecli.errors import ConfigError, MissingDependencyError
from restorecli.images import read_array, write_array
from restorecli.zoo import loader, pretrained, via_spandrel
from restorecli.zoo.descriptor import ModelDescriptor
from tests.spandrel_nets import tiny_swinir_x2
from tests.test_engine_runner import Recorder, describe

runner = CliRunner()


def sr_net(scale: int = 2, channels: int = 3) -> nn.Module:
    """Convolutions then a pixel shuffle: local, receptive radius 2 input pixels."""
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(8, channels * scale**2, 3, padding=1),
        nn.PixelShuffle(scale),
    )


def sr_descriptor(module: nn.Module, scale: int = 2, **fields: object) -> ModelDescriptor:
    return replace(describe(module, **fields), scale=scale)  # type: ignore[arg-type]


class SizeChecked(nn.Module):
    """Refuses inputs a network with spandrel's size requirements would refuse, and records them."""

    def __init__(self, inner: nn.Module, minimum: int, square: bool) -> None:
        super().__init__()
        self.inner, self.minimum, self.square = inner, minimum, square
        self.shapes: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        self.shapes.append((height, width))
        if min(height, width) < self.minimum or (self.square and height != width):
            raise ValueError(f"input {height}x{width} breaks the size rule")
        return self.inner(x)


# ---------------------------------------------------------------------------------------------
# Engine


def test_output_is_scale_times_the_odd_sized_input_and_equals_the_cropped_whole_forward() -> None:
    descriptor = sr_descriptor(sr_net(3), scale=3)
    x = torch.rand(2, 3, 29, 37)
    restored = restore_tensor(descriptor, x)
    assert restored.shape == (2, 3, 87, 111)
    padded = pad_to(x, 32, 40, "reflect")
    with torch.no_grad():
        expected = descriptor.module(padded)[..., :87, :111].clamp(0, 1)
    torch.testing.assert_close(restored, expected)


def test_tiles_blend_in_output_coordinates_exactly_for_a_local_model() -> None:
    descriptor = sr_descriptor(sr_net(2))
    x = torch.rand(1, 3, 45, 61)
    whole = restore_tensor(descriptor, x)
    # Margin overlap // 4 = 4 input pixels covers the radius of 2: the tiled output is the whole one.
    tiled = restore_tensor(descriptor, x, RunOptions(tile=24, overlap=16, tile_batch=3))
    assert tiled.shape == (1, 3, 90, 122)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_out_of_memory_shrinks_the_tiles_of_a_scaled_model_with_the_same_output(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder(sr_net(2), fails_on="cpu", limit=40 * 40)
    descriptor = sr_descriptor(recorder)
    x = torch.rand(1, 3, 64, 64)
    restored = restore_tensor(descriptor, x, RunOptions(overlap=16, tile_batch=1))
    assert "ran out of memory (untiled); restored with 32-pixel tiles" in caplog.text
    assert recorder.shapes[-1] == (1, 3, 32, 32)
    with torch.no_grad():
        expected = recorder.inner(x).clamp(0, 1)
    torch.testing.assert_close(restored, expected, atol=1e-5, rtol=0)


def test_a_model_that_does_not_scale_as_declared_is_a_config_error() -> None:
    descriptor = sr_descriptor(sr_net(2), scale=4)
    with pytest.raises(ConfigError, match=r"Expected model output of shape \(1, 3, 64, 64\), but got \(1, 3, 32, 32\)"):
        restore_tensor(descriptor, torch.rand(1, 3, 16, 16))


def test_minimum_and_square_size_rules_pad_the_image_and_its_tiles() -> None:
    module = SizeChecked(sr_net(2), minimum=24, square=True)
    descriptor = replace(sr_descriptor(module), pad_multiple=4, min_size=24, square=True)
    assert padded_size(5, 13, 4, 24, True) == (24, 24)
    assert restore_tensor(descriptor, torch.rand(1, 3, 5, 13)).shape == (1, 3, 10, 26)
    assert module.shapes[-1] == (24, 24)
    tiled = restore_tensor(descriptor, torch.rand(1, 3, 50, 30), RunOptions(tile=28, overlap=8))
    assert tiled.shape == (1, 3, 100, 60)
    assert all(h == w and h >= 24 for h, w in module.shapes)
    with pytest.raises(ConfigError, match="Expected a tile of at least 24 pixels .the model's smallest input"):
        restore_tensor(descriptor, torch.rand(1, 3, 50, 30), RunOptions(tile=20, overlap=4))


def test_reflect_replicate_pads_as_spandrel_does() -> None:
    x = torch.arange(3.0).reshape(1, 1, 1, 3).expand(1, 1, 2, 3)
    padded = pad_to(x, 2, 8, "reflect-replicate")
    # Reflect by the side minus one (2 columns: 1, 0), then replicate the last column.
    assert padded[0, 0, 0].tolist() == [0, 1, 2, 1, 0, 0, 0, 0]
    assert pad_to(x, 2, 8, "reflect")[0, 0, 0].tolist() == [0, 1, 2, 1, 0, 1, 2, 1]  # ours repeats the mirror


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_arrays_keep_their_depth_and_alpha_is_resized_bicubically(dtype: type[np.unsignedinteger]) -> None:
    descriptor = sr_descriptor(sr_net(2))
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    rgba = rng.integers(0, top + 1, (13, 17, 4), dtype=dtype)
    restored = restore_array(descriptor, rgba)
    assert restored.dtype == dtype and restored.shape == (26, 34, 4)
    np.testing.assert_array_equal(restored[..., 3], cv2.resize(rgba[..., 3], (34, 26), interpolation=cv2.INTER_CUBIC))
    grey = rng.integers(0, top + 1, (13, 17), dtype=dtype)
    assert restore_array(descriptor, grey).shape == (26, 34)


def test_a_grey_model_upscales_each_channel_of_an_rgb_image() -> None:
    descriptor = sr_descriptor(sr_net(2, channels=1), in_channels=1, out_channels=1)
    rgb = np.random.default_rng(0).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    restored = restore_array(descriptor, rgb)
    assert restored.shape == (18, 22, 3)
    np.testing.assert_array_equal(restored[..., 1], restore_array(descriptor, np.ascontiguousarray(rgb[..., 1])))


def test_restore_image_returns_the_larger_pil_image() -> None:
    descriptor = sr_descriptor(sr_net(4), scale=4)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (7, 9, 4), dtype=np.uint8), mode="RGBA")
    restored = restore_image(descriptor, image)
    assert isinstance(restored, Image.Image) and restored.size == (36, 28) and restored.mode == "RGBA"


def test_profile_measures_the_latency_of_a_scaled_model() -> None:
    arguments = [
        "--arch",
        "safmn",
        "--config",
        "tiny",
        "--size",
        "32",
        "--repeats",
        "1",
        "--warmup",
        "0",
        "--no-memory",
    ]
    result = runner.invoke(app, ["profile", *arguments, "--json"])
    assert result.exit_code == 0, result.output
    (measured,) = json.loads(result.stdout)["sizes"]
    assert measured["error"] is None and measured["latency"]["median_ms"] > 0


# ---------------------------------------------------------------------------------------------
# Zoo and command line


def test_scale_picks_the_zoo_entry_of_that_scale() -> None:
    assert pretrained.model_for_command("upscale", None, 2) == "safmn-x2"
    assert pretrained.model_for_command("upscale", None, 3) == "safmn-x3"
    assert pretrained.model_for_command("upscale", None, 4) == "restorecli-upscale"  # the default, not safmn-x4
    assert pretrained.model_for_command("upscale", "camixersr-x4", 2) == "camixersr-x4"  # checked once loaded
    with pytest.raises(ConfigError, match="Expected --scale among 2, 3, 4 .the zoo's upscale models., but got 8"):
        pretrained.model_for_command("upscale", None, 8)


@pytest.fixture
def safmn_x2_file(tmp_path: Path) -> Path:
    from restorecli.zoo import architectures

    path = tmp_path / "safmn_x2.pth"
    torch.save({"params": architectures.build_model("safmn", "tiny").state_dict()}, path)
    return path


def test_upscale_command_writes_scaled_images_and_checks_scale(safmn_x2_file: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    rng = np.random.default_rng(0)
    write_array(folder / "a.png", rng.integers(0, 256, (29, 37, 3), dtype=np.uint8))
    write_array(folder / "b16.png", rng.integers(0, 65536, (11, 13, 4), dtype=np.uint16))
    out = tmp_path / "out"
    result = runner.invoke(app, ["upscale", str(folder), str(out), "--model", str(safmn_x2_file), "--scale", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert "2 restored, 0 skipped, 0 failed" in result.stdout
    assert read_array(out / "a.png").shape == (58, 74, 3)
    upscaled16 = read_array(out / "b16.png")
    assert upscaled16.shape == (22, 26, 4) and upscaled16.dtype == np.uint16

    result = runner.invoke(
        app, ["upscale", str(folder), str(tmp_path / "o2"), "--model", str(safmn_x2_file), "--scale", "4", "-q"]
    )
    assert result.exit_code == 1
    assert f"Error: Expected a model that upscales x4 (--scale), but {safmn_x2_file} upscales x2" in result.stderr


def test_upscale_takes_no_tlc_and_other_commands_no_scale() -> None:
    assert "--scale" in runner.invoke(app, ["upscale", "--help"]).stdout
    assert "--tlc" not in runner.invoke(app, ["upscale", "--help"]).stdout
    assert "--scale" not in runner.invoke(app, ["denoise", "--help"]).stdout


# ---------------------------------------------------------------------------------------------
# Parity with spandrel: seeded random checkpoints in the official layouts, an odd-sized image


def _spandrel() -> object:
    try:
        return via_spandrel.import_spandrel()
    except MissingDependencyError:
        pytest.skip("spandrel is not installed (make install puts it in .venv)")


def _safmn_x4() -> tuple[nn.Module, bool]:
    from spandrel.architectures.SAFMN import SAFMN

    return SAFMN(dim=8, n_blocks=1, ffn_scale=2.0, upscaling_factor=4), True  # official: BasicSR "params"


def _swinir_x2() -> tuple[nn.Module, bool]:
    return tiny_swinir_x2(), True


def _scunet_color() -> tuple[nn.Module, bool]:
    from spandrel.architectures.SCUNet import SCUNet

    return SCUNet(in_nc=3, config=[1, 1, 1, 1, 1, 1, 1], dim=64), False  # official: a bare state dict


@pytest.mark.parametrize(
    ("build", "command", "arch"),
    [
        (_safmn_x4, "upscale", "safmn"),
        (_swinir_x2, "upscale", "spandrel:SwinIR"),
        (_scunet_color, "denoise", "spandrel:SCUNet"),
    ],
)
@pytest.mark.parametrize("size", [(29, 37), (3, 5)])
def test_output_equals_spandrels_within_one_level(
    build: Callable[[], tuple[nn.Module, bool]], command: str, arch: str, size: tuple[int, int], tmp_path: Path
) -> None:
    spandrel = _spandrel()
    torch.manual_seed(0)
    network, wrapped = build()
    state = network.state_dict()
    path = tmp_path / "model.pth"
    torch.save({"params": state} if wrapped else state, path)
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    write_array(tmp_path / "in" / "image.png", image)

    result = runner.invoke(app, [command, str(tmp_path / "in"), str(tmp_path / "out"), "--model", str(path), "-q"])
    assert result.exit_code == 0, result.output
    assert loader.load_descriptor(path).arch == arch  # native SAFMN keeps precedence over spandrel
    ours = read_array(tmp_path / "out" / "image.png").astype(np.float64)

    reference = spandrel.ModelLoader().load_from_state_dict(state).eval()  # type: ignore[attr-defined]
    with torch.inference_mode():
        theirs = reference(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    theirs = theirs[0].permute(1, 2, 0).numpy() * 255
    assert ours.shape == theirs.shape == (size[0] * reference.scale, size[1] * reference.scale, 3)
    error = np.abs(ours - theirs)
    assert error.max() <= 1.0, np.histogram(error, bins=[0, 0.5, 1, 2, 4, 8, 256])
