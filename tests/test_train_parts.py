"""Training building blocks against hand-computed values and independent references."""

from __future__ import annotations

import math
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio
from torch import nn

from restorecli.data.degradations import degrade_files, make_params
from restorecli.engine.options import RunOptions
from restorecli.errors import ConfigError, DatasetError
from restorecli.images import read_array, write_array
from restorecli.train.data import (
    BatchPlan,
    CleanDataset,
    PairedDataset,
    build_loader,
    build_validation_set,
    paired_files,
)
from restorecli.train.losses import build_loss, charbonnier_loss, fft_l1_loss, l1_loss, psnr_loss
from restorecli.train.optim import EMA, WarmupCosine
from restorecli.train.recipe import DegradationSection, LossSection, ValidationSection, recipe_from_dict
from restorecli.train.validate import validate
from restorecli.zoo.descriptor import ModelDescriptor


def smooth_image(seed: int, height: int = 40, width: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    channels = [0.5 + 0.4 * np.sin(x / rng.uniform(2, 6) + y / rng.uniform(3, 9) + c) for c in range(3)]
    return (np.stack(channels, axis=-1) * 255).round().astype(np.uint8)


def recipe_for(clean: Path, **extra: object) -> object:
    raw = {
        "name": "t",
        "model": {"arch": "nafnet", "config": "tiny"},
        "data": {"clean": [str(clean)], "patch": 16, "batch": 3, "workers": 0},
        "degradation": {"kind": "noise", "params": {"sigma_range": [5.0, 30.0]}},
        "schedule": {
            "iterations": 10,
            "stages": [{"until": 4, "patch": 8, "batch": 5}, {"until": 10, "patch": 16, "batch": 3}],
        },
    }
    raw.update(extra)
    return recipe_from_dict(raw)


@pytest.fixture
def clean_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "clean"
    for i in range(4):
        write_array(folder / f"img{i}.png", smooth_image(i))
    return folder


# ---------------------------------------------------------------- losses


def test_psnr_loss_is_minus_psnr_per_image_averaged() -> None:
    rng = np.random.default_rng(1)
    target = rng.random((2, 3, 8, 8))
    pred = np.clip(target + rng.normal(0, [[[[0.05]]], [[[0.2]]]], target.shape), 0, 1)
    expected = -np.mean([peak_signal_noise_ratio(target[i], pred[i], data_range=1.0) for i in range(2)])
    loss = psnr_loss(torch.from_numpy(pred), torch.from_numpy(target))
    assert float(loss) == pytest.approx(expected, abs=1e-4)  # the loss adds 1e-8 to the MSE


def test_l1_and_charbonnier_by_hand() -> None:
    pred = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]])
    target = torch.zeros_like(pred)
    assert float(l1_loss(pred, target)) == pytest.approx(1.75 / 4)
    eps = 0.1
    expected = np.mean([math.sqrt(v * v + eps * eps) for v in (0.0, 0.5, 1.0, 0.25)])
    assert float(charbonnier_loss(pred, target, eps)) == pytest.approx(expected, rel=1e-6)


def test_fft_loss_of_a_constant_offset_is_its_dc_term() -> None:
    # A constant difference c has one non-zero orthonormal coefficient, c * sqrt(H * W), at DC.
    height, width, c = 4, 6, 0.3
    target = torch.zeros(1, 1, height, width)
    pred = target + c
    entries = height * (width // 2 + 1) * 2  # real and imaginary parts of the half spectrum
    assert float(fft_l1_loss(pred, target)) == pytest.approx(c * math.sqrt(height * width) / entries, rel=1e-6)
    assert float(fft_l1_loss(target, target)) == 0.0


def test_build_loss_adds_the_weighted_fft_term() -> None:
    rng = torch.Generator().manual_seed(0)
    pred, target = torch.rand(2, 3, 8, 8, generator=rng), torch.rand(2, 3, 8, 8, generator=rng)
    total = build_loss(LossSection(kind="l1", fft_weight=0.5))(pred, target)
    assert float(total) == pytest.approx(float(l1_loss(pred, target) + 0.5 * fft_l1_loss(pred, target)), rel=1e-6)
    charb = build_loss(LossSection(kind="charbonnier", charbonnier_eps=1e-2))(pred, target)
    assert float(charb) == pytest.approx(float(charbonnier_loss(pred, target, 1e-2)), rel=1e-6)


# ---------------------------------------------------------------- schedule and EMA


def test_warmup_cosine_factors() -> None:
    factor = WarmupCosine(warmup=4, total=14, floor=0.1)
    assert [factor(i) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4) == pytest.approx(1.0)
    assert factor(9) == pytest.approx(0.55)  # half-way through the cosine: (1 + floor) / 2
    assert factor(14) == pytest.approx(0.1)
    assert factor(20) == pytest.approx(0.1)


def test_ema_ramps_its_decay_then_averages() -> None:
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # decay min(0.5, 1/10) = 0.1 -> 0.9
    assert float(ema.state["weight"]) == pytest.approx(0.9)
    ema.update(model)  # decay min(0.5, 2/11) -> 0.9 * 2/11 + 9/11
    assert float(ema.state["weight"]) == pytest.approx(0.9 * 2 / 11 + 9 / 11)
    for _ in range(20):
        ema.update(model)
    assert ema.updates == 22
    assert float(ema.state["weight"]) == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------- sampling and data


def test_batch_plan_follows_stages_and_covers_each_epoch(clean_dir: Path) -> None:
    recipe = recipe_for(clean_dir)
    batches = list(BatchPlan(4, recipe))
    assert [len(b) for b in batches] == [5] * 4 + [3] * 6
    assert {k[2] for b in batches[:4] for k in b} == {8} and {k[2] for b in batches[4:] for k in b} == {16}
    numbers = [k[1] for b in batches for k in b]
    assert numbers == list(range(38))
    indices = [k[0] for b in batches for k in b]
    for epoch in range(9):
        assert sorted(indices[4 * epoch : 4 * epoch + 4]) == [0, 1, 2, 3]


def test_batch_plan_resumed_at_an_iteration_continues_the_same_stream(clean_dir: Path) -> None:
    recipe = recipe_for(clean_dir)
    full = list(BatchPlan(4, recipe))
    assert list(BatchPlan(4, recipe, start=6)) == full[6:]


def test_clean_dataset_is_a_pure_function_of_the_key(clean_dir: Path) -> None:
    recipe = recipe_for(clean_dir)
    dataset = CleanDataset(sorted(clean_dir.iterdir()), recipe.degradation, seed=0, margin=4, augment=True, channels=3)
    degraded, clean = dataset[(1, 7, 16)]
    again, clean_again = dataset[(1, 7, 16)]
    assert degraded.shape == clean.shape == (3, 16, 16)
    assert torch.equal(degraded, again) and torch.equal(clean, clean_again)
    assert not torch.equal(degraded, clean)
    other, _ = dataset[(1, 8, 16)]
    assert not torch.equal(other, degraded)


def test_workers_do_not_change_the_batches(clean_dir: Path) -> None:
    serial = recipe_for(clean_dir)
    parallel = recipe_for(clean_dir, data={"clean": [str(clean_dir)], "patch": 16, "batch": 3, "workers": 1})
    files = sorted(clean_dir.iterdir())
    dataset = CleanDataset(files, serial.degradation, seed=0, margin=0, augment=True, channels=3)
    first = list(islice(build_loader(dataset, serial, 2), 5))
    second = list(islice(build_loader(dataset, parallel, 2), 5))
    assert len(first) == len(second) == 5
    for (a_in, a_out), (b_in, b_out) in zip(first, second, strict=True):
        assert torch.equal(a_in, b_in) and torch.equal(a_out, b_out)


def test_paired_crops_stay_aligned_under_augmentation(tmp_path: Path) -> None:
    for i in range(2):
        target = smooth_image(i)
        write_array(tmp_path / "pairs" / "target" / f"p{i}.png", target)
        write_array(tmp_path / "pairs" / "input" / f"p{i}.png", 255 - target)
    (tmp_path / "train.txt").write_text("p1\r\n", encoding="utf-8")
    pairs = paired_files(str(tmp_path / "pairs"), ("input", "target"), str(tmp_path / "train.txt"))
    assert [p[1].name for p in pairs] == ["p1.png"]
    dataset = PairedDataset(
        paired_files(str(tmp_path / "pairs"), ("input", "target"), None), seed=3, augment=True, channels=3
    )
    for sample in range(8):
        degraded, clean = dataset[(sample % 2, sample, 12)]
        assert torch.allclose(degraded, 1.0 - clean, atol=1e-6)


def test_paired_names_may_differ_by_pattern(tmp_path: Path) -> None:
    for i in range(2):
        write_array(tmp_path / "rain100" / "input" / f"rain-{i:03d}.png", smooth_image(i))
        write_array(tmp_path / "rain100" / "target" / f"norain-{i:03d}.png", smooth_image(i))
    patterns = {"input": "rain-{id}", "target": "norain-{id}"}
    pairs = paired_files(str(tmp_path / "rain100"), ("input", "target"), None, patterns)
    assert [(a.name, b.name) for a, b in pairs] == [
        ("rain-000.png", "norain-000.png"),
        ("rain-001.png", "norain-001.png"),
    ]


def test_paired_folder_with_a_missing_target_is_an_error(tmp_path: Path) -> None:
    write_array(tmp_path / "pairs" / "input" / "a.png", smooth_image(0))
    write_array(tmp_path / "pairs" / "input" / "b.png", smooth_image(1))
    write_array(tmp_path / "pairs" / "target" / "a.png", smooth_image(0))
    with pytest.raises(DatasetError, match="b \\(no target\\)"):
        paired_files(str(tmp_path / "pairs"), ("input", "target"), None)


def test_patch_larger_than_the_image_is_an_error(clean_dir: Path) -> None:
    recipe = recipe_for(clean_dir)
    dataset = CleanDataset(sorted(clean_dir.iterdir()), recipe.degradation, seed=0, margin=0, augment=False, channels=3)
    with pytest.raises(DatasetError, match="at least 64x64"):
        dataset[(0, 0, 64)]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("kind", ["rain", "blur"])
def test_validation_inputs_equal_the_files_restore_degrade_writes(clean_dir: Path, tmp_path: Path, kind: str) -> None:
    degrade_files(kind, clean_dir, tmp_path / "degraded", make_params(kind), seed=0, progress=False)
    recipe = recipe_for(clean_dir)
    section = ValidationSection(
        clean=str(clean_dir), degradation=DegradationSection(kind=kind), seed=0, max_images=0, crop=0
    )
    items = build_validation_set(section, recipe, channels=3)
    assert len(items) == 4
    for item in items:
        written = read_array(tmp_path / "degraded" / f"{item.name}.png").astype(np.float32) / 255
        np.testing.assert_array_equal(item.degraded, written)


def test_validation_of_a_sigma_range_is_refused(clean_dir: Path) -> None:
    recipe = recipe_for(clean_dir)
    section = ValidationSection(clean=str(clean_dir), degradation=DegradationSection("noise", {"sigma_range": [0, 5]}))
    with pytest.raises(ConfigError, match="fixed validation sigma"):
        build_validation_set(section, recipe, channels=3)


def test_validate_scores_an_identity_model_as_its_input(clean_dir: Path) -> None:
    recipe = recipe_for(clean_dir)
    section = ValidationSection(clean=str(clean_dir), degradation=DegradationSection("noise", {"sigma": 15.0}), crop=30)
    items = build_validation_set(section, recipe, channels=3)
    assert items[0].degraded.shape == (30, 30, 3)
    identity = ModelDescriptor(nn.Identity(), "identity", "test", {}, None, 3, 3, 8, "constant")
    scores = validate(identity, items, options=RunOptions())
    assert scores.images == 4
    assert scores.psnr == pytest.approx(scores.input_psnr) and scores.ssim == pytest.approx(scores.input_ssim)
    assert 20 < scores.input_psnr < 30
