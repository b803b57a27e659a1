"""Training super-resolution: bicubic downscaling on the fly, aligned pairs, SR validation, export and loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from restorecli.api import load_model
from restorecli.data.degradations import DownscaleParams, degrade, degrade_files, make_params, size_factor
from restorecli.data.resize import downscale_files, imresize
from restorecli.engine.options import RunOptions
from restorecli.errors import ConfigError
from restorecli.images import read_array, write_array
from restorecli.metrics.psnr_ssim import psnr
from restorecli.train.data import CleanDataset, ValidationItem, build_validation_set
from restorecli.train.loop import train
from restorecli.train.recipe import DegradationSection, Recipe, ValidationSection, load_recipe, recipe_from_dict
from restorecli.train.trainer import Trainer
from restorecli.train.validate import restore_float_image, validate
from restorecli.zoo.descriptor import ModelDescriptor

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def smooth_image(seed: int, height: int, width: int) -> np.ndarray:
    """uint8 RGB waves with detail at every scale the tiny network can learn."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    channels = [0.5 + 0.4 * np.sin(x / rng.uniform(1.5, 5) + y / rng.uniform(2, 7) + c) for c in range(3)]
    return (np.stack(channels, axis=-1) * 255).round().astype(np.uint8)


@pytest.fixture
def clean_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "clean"
    for i, (height, width) in enumerate([(40, 48), (41, 51), (48, 40), (44, 44)]):
        write_array(folder / f"img{i}.png", smooth_image(i, height, width))
    return folder


def sr_recipe(clean: Path, run: Path, **sections: dict) -> Recipe:
    """A tiny SAFMN x2 run: 16 px targets from 8 px inputs (the smallest SAFMN takes)."""
    raw: dict = {
        "name": "tiny-upscale",
        "model": {"arch": "safmn", "config": "tiny"},
        "data": {"clean": [str(clean)], "patch": 16, "batch": 4, "workers": 0, "margin": 16},
        "degradation": {"kind": "downscale", "params": {"scale": 2}},
        "schedule": {"iterations": 30, "warmup": 2},
        "optim": {"lr": 4e-3, "ema": 0.9},
        "validation": {
            "every": 10,
            "clean": str(clean),
            "max_images": 2,
            "crop": 24,
            "final_max_images": 0,
            "y_channel": True,
            "crop_border": 2,
        },
        "output": {"dir": str(run), "checkpoint_every": 10, "log_every": 1},
        "runtime": {"device": "cpu", "threads": 1},
    }
    raw.update(sections)
    return recipe_from_dict(raw)


# ---------------------------------------------------------------- the degradation


def test_downscale_is_matlab_bicubic_of_the_float_image_clipped() -> None:
    image = smooth_image(0, 41, 50).astype(np.float32) / 255
    image[10:20, 10:20] = [1.0, 0.0, 1.0]  # hard edges: the cubic kernel overshoots here
    low = degrade("downscale", image, np.random.default_rng(0), DownscaleParams(scale=3))
    assert low.shape == (14, 17, 3) and low.dtype == np.float32
    reference = imresize(image.astype(np.float64), 1 / 3)
    assert reference.max() > 1 and reference.min() < 0
    np.testing.assert_allclose(low, np.clip(reference, 0, 1), atol=1e-6)
    assert size_factor(DownscaleParams(scale=3)) == 3 and size_factor(make_params("noise")) == 1


@pytest.mark.parametrize("scale", [1, 5, 2.0, "4"])
def test_downscale_scales_outside_2_to_4_are_refused(scale: object) -> None:
    with pytest.raises(ConfigError, match=r"scale among \[2, 3, 4\]"):
        make_params("downscale", {"scale": scale})


def test_restore_degrade_files_points_downscaling_to_its_own_writer(clean_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="downscale_files"):
        degrade_files("downscale", clean_dir, tmp_path / "out", DownscaleParams(2), progress=False)


# ---------------------------------------------------------------- training pairs


def test_clean_dataset_pairs_a_patch_with_its_bicubic_reduction(clean_dir: Path, tmp_path: Path) -> None:
    recipe = sr_recipe(clean_dir, tmp_path / "run", degradation={"kind": "downscale", "params": {"scale": 4}})
    assert recipe.degradation is not None
    dataset = CleanDataset(sorted(clean_dir.iterdir()), recipe.degradation, seed=0, margin=16, augment=True, channels=3)
    assert dataset.margin == 0  # a margin would misalign the reduction
    image = read_array(dataset.files[1]).astype(np.float32) / 255
    orientations = [np.rot90(image, k) for k in range(4)]
    orientations += [o[:, ::-1] for o in orientations]
    for sample in range(6):
        low, high = dataset[(1, sample, 16)]
        assert low.shape == (3, 4, 4) and high.shape == (3, 16, 16)
        high_hwc, low_hwc = high.permute(1, 2, 0).numpy(), low.permute(1, 2, 0).numpy()
        # The target is an (augmented) crop of the image, and the input exactly its reduction.
        assert any(_contains(o, high_hwc) for o in orientations)
        np.testing.assert_allclose(low_hwc, np.clip(imresize(high_hwc, 1 / 4), 0, 1), atol=1e-6)


def _contains(image: np.ndarray, patch: np.ndarray) -> bool:
    size = patch.shape[0]
    return any(
        np.array_equal(image[top : top + size, left : left + size], patch)
        for top in range(image.shape[0] - size + 1)
        for left in range(image.shape[1] - size + 1)
    )


# ---------------------------------------------------------------- recipe and trainer checks


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": {"clean": ["c"], "patch": 18}}, "data.patch to be a multiple of the downscaling scale 4"),
        (
            {"schedule": {"iterations": 9, "stages": [{"until": 9, "patch": 30, "batch": 2}]}},
            r"stage patch \(until 9\)",
        ),
        ({"validation": {"clean": "v", "crop": 250}}, "validation.crop to be a multiple"),
        (
            {"validation": {"clean": "v", "degradation": {"kind": "downscale", "params": {"scale": 2}}}},
            "shrink images as .degradation. does \\(4x\\), but got 2x",
        ),
        ({"degradation": {"kind": "downscale", "params": {"sacle": 4}}}, "did you mean 'scale'.*\\[degradation\\] of"),
    ],
)
def test_recipe_sizes_must_suit_the_scale(change: dict, message: str) -> None:
    raw: dict = {
        "name": "sr",
        "model": {"arch": "safmn"},
        "data": {"clean": ["c"], "patch": 64},
        "degradation": {"kind": "downscale", "params": {"scale": 4}},
        "schedule": {"iterations": 9},
        **change,
    }
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict(raw, source="sr.toml")


def test_the_network_scale_must_match_the_data(clean_dir: Path, tmp_path: Path) -> None:
    noise = {"kind": "noise", "params": {"sigma": 10.0}}
    with pytest.raises(ConfigError, match="inputs 2x smaller than their targets, the scale of safmn tiny.*gives 1x"):
        Trainer(sr_recipe(clean_dir, tmp_path, degradation=noise, validation=None), torch.device("cpu"))
    with pytest.raises(ConfigError, match="inputs 1x smaller.*nafnet tiny, but the data gives 2x"):
        Trainer(sr_recipe(clean_dir, tmp_path, model={"arch": "nafnet", "config": "tiny"}), torch.device("cpu"))
    paired = {"paired": str(tmp_path), "every": 5}
    with pytest.raises(ConfigError, match="validation.clean to validate safmn tiny"):
        Trainer(sr_recipe(clean_dir, tmp_path, validation=paired), torch.device("cpu"))


# ---------------------------------------------------------------- validation


def test_validation_inputs_equal_restore_degrade_downscale_files(clean_dir: Path, tmp_path: Path) -> None:
    recipe = sr_recipe(clean_dir, tmp_path / "run")
    section = ValidationSection(clean=str(clean_dir), max_images=0, crop=0)
    items = build_validation_set(section, recipe, channels=3)
    # The 41x51 image is cut to 40x50 (multiples of 2), as SR test sets are, before downscaling.
    assert [item.clean.shape for item in items] == [(40, 48, 3), (40, 50, 3), (48, 40, 3), (44, 44, 3)]
    (tmp_path / "cut").mkdir()
    for item in items:
        write_array(tmp_path / "cut" / f"{item.name}.png", np.round(item.clean * 255).astype(np.uint8))
    downscale_files(tmp_path / "cut", tmp_path / "low", 2, progress=False)
    for item in items:
        written = read_array(tmp_path / "low" / f"{item.name}.png").astype(np.float32) / 255
        np.testing.assert_array_equal(item.degraded, written)

    cropped = build_validation_set(ValidationSection(clean=str(clean_dir), crop=24), recipe, channels=3)
    for whole, crop in zip(items, cropped, strict=True):
        assert crop.degraded.shape == (12, 12, 3) and crop.clean.shape == (24, 24, 3)
        top, left = (whole.degraded.shape[0] - 12) // 2, (whole.degraded.shape[1] - 12) // 2
        np.testing.assert_array_equal(crop.degraded, whole.degraded[top : top + 12, left : left + 12])
        np.testing.assert_array_equal(crop.clean, whole.clean[2 * top : 2 * top + 24, 2 * left : 2 * left + 24])


def test_sr_validation_crops_the_padded_output_and_scores_bicubic_as_the_input() -> None:
    clean = smooth_image(3, 26, 22)
    low = imresize(clean, 0.5)
    item = ValidationItem("x", low.astype(np.float32) / 255, clean.astype(np.float32) / 255)
    model = _upsampler(2)
    output = restore_float_image(model, item.degraded, RunOptions())
    assert output.shape == (26, 22, 3)  # 13x11 padded to 16x16, upscaled to 32x32, cropped back
    np.testing.assert_array_equal(output, np.repeat(np.repeat(item.degraded, 2, axis=0), 2, axis=1))

    scores = validate(model, [item], options=RunOptions(), crop_border=2, y_channel=True)
    nearest = np.repeat(np.repeat(low, 2, axis=0), 2, axis=1)
    assert scores.psnr == pytest.approx(psnr(nearest, clean, data_range=255, crop_border=2, y_channel=True))
    bicubic = imresize(low, 2)
    assert scores.input_psnr == pytest.approx(psnr(bicubic, clean, data_range=255, crop_border=2, y_channel=True))
    assert scores.input_psnr > scores.psnr  # bicubic beats pixel repetition on smooth images

    with pytest.raises(ConfigError, match="outputs the size of the clean validation images, but got 44x52 for 22x26"):
        validate(_upsampler(4), [item], options=RunOptions())


def _upsampler(scale: int) -> ModelDescriptor:
    """Pixel repetition as a model of the given scale (padding as the engine's reflect rule)."""
    upsample = nn.Upsample(scale_factor=scale, mode="nearest")
    return ModelDescriptor(upsample, f"nearest-x{scale}", "test", {}, None, 3, 3, 8, "reflect", scale=scale)


# ---------------------------------------------------------------- end to end


def test_a_tiny_sr_run_learns_and_exports_an_upscale_model(clean_dir: Path, tmp_path: Path) -> None:
    recipe = sr_recipe(clean_dir, tmp_path / "run")
    result = train(recipe, progress=False)
    assert result.iteration == 30 and result.export is not None
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    losses = [line["loss"] for line in log if line["kind"] == "train"]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])

    card = json.loads(result.export.card.read_text())
    assert card["task"] == "upscale" and card["config"]["upscaling_factor"] == 2
    assert card["data"]["train"]["degradation"] == {"kind": "downscale", "scale": 2}
    assert card["data"]["validation"]["degradation"]["scale"] == 2  # inherited from training
    assert card["val"]["images"] == 4 and card["val"]["crop"] == 0
    assert card["recipe"]["validation"]["y_channel"] is True and card["recipe"]["validation"]["crop_border"] == 2

    descriptor = load_model(result.export.weights, device="cpu")
    assert descriptor.arch == "safmn" and descriptor.scale == 2 and descriptor.task == "upscale"
    with torch.no_grad():
        out = descriptor.module(torch.rand(1, 3, 16, 24))
    assert out.shape == (1, 3, 32, 48)


def test_the_shipped_upscale_recipe_is_a_small_x4_safmn_validated_by_the_sr_protocol() -> None:
    recipe = load_recipe(RECIPES / "upscale.toml")
    assert recipe.name == "restorecli-upscale" and recipe.task == "upscale"
    assert recipe.model.arch == "safmn"
    assert recipe.degradation == DegradationSection(kind="downscale", params={"scale": 4})
    assert recipe.data.clean == ("../shared/data/train/CBSD432",)
    validation = recipe.validation
    assert validation is not None and validation.clean == "../shared/data/val/Kodak24"
    assert validation.y_channel and validation.crop_border == 4
    assert recipe.data.patch % 4 == 0 and recipe.runtime.threads == 1 and recipe.runtime.precision == "bf16"
