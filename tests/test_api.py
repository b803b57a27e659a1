"""The notebook API: one options record, keyword shortcuts, the device fallback policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import restorecli
from restorecli.api import RunOptions, load_model, restore_image
from restorecli.engine import runner
from restorecli.errors import ConfigError
from restorecli.zoo import architectures


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pth"
    torch.save(architectures.build_model("nafnet", "tiny").state_dict(), path)
    return path


def test_only_a_model_placed_by_auto_may_fall_back(checkpoint: Path) -> None:
    assert load_model(checkpoint, "auto", progress=False).auto_device
    named = load_model(checkpoint, "cpu", progress=False)
    assert not named.auto_device and named.device == torch.device("cpu")


def test_shortcuts_build_the_same_record_as_options(checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_model(checkpoint, "cpu", progress=False)
    seen: list[RunOptions | None] = []
    real = runner.restore_tensor
    monkeypatch.setattr(
        runner, "restore_tensor", lambda d, x, options=None: seen.append(options) or real(d, x, options)
    )
    image = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    by_shortcut = restore_image(model, image, tile=40, precision="bf16", tile_batch=2)
    by_record = restore_image(model, image, options=RunOptions(tile=40, precision="bf16", tile_batch=2))
    overridden = restore_image(model, Image.fromarray(image), options=RunOptions(overlap=8, tile=48), tile=24)
    assert seen == [
        RunOptions(tile=40, precision="bf16", tile_batch=2),
        RunOptions(tile=40, precision="bf16", tile_batch=2),
        RunOptions(tile=24, overlap=8),  # a shortcut overrides that field of the record
    ]
    np.testing.assert_array_equal(by_shortcut, by_record)
    assert isinstance(overridden, Image.Image) and overridden.size == (50, 40)
    with pytest.raises(ConfigError, match="positive tile size"):
        restore_image(model, image, tile=-1)


def test_the_record_is_public() -> None:
    assert restorecli.RunOptions is RunOptions
    assert restorecli.parse_memory_size("1GiB") == 1 << 30


def test_a_torch_device_is_taken_and_anything_else_named(checkpoint: Path) -> None:
    from restorecli.errors import DeviceError

    model = load_model(checkpoint, torch.device("cpu"), progress=False)
    assert model.device == torch.device("cpu") and not model.auto_device
    with pytest.raises(DeviceError, match="Expected a device name or a torch.device, but got None"):
        load_model(checkpoint, None, progress=False)  # type: ignore[arg-type]


def test_an_image_comes_back_in_the_shape_it_came(checkpoint: Path) -> None:
    from restorecli.errors import ImageReadError

    model = load_model(checkpoint, "cpu", progress=False)
    grey = np.random.default_rng(2).integers(0, 256, (24, 20), dtype=np.uint8)
    restored = restore_image(model, grey[:, :, None])
    assert restored.shape == (24, 20, 1)
    np.testing.assert_array_equal(restored[:, :, 0], restore_image(model, grey))
    with pytest.raises(ImageReadError, match=r"but got uint8 \(0, 20\)"):
        restore_image(model, np.zeros((0, 20), np.uint8))
