"""The weights in weights/ load through the zoo and beat their degraded input on a real crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from restorecli import load_model, restore_image
from restorecli.images import read_array
from restorecli.metrics.psnr_ssim import psnr
from restorecli.zoo import download, loader, pretrained
from restorecli.zoo.card import read_card

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DEGRADED = {"derain": "rainy", "deblur": "blurry", "denoise": "noisy"}
CROP = (slice(150, 310), slice(150, 310))  # 160 x 160, away from the borders


@pytest.mark.parametrize("command", sorted(DEGRADED))
def test_default_model_restores_a_real_crop(command: str) -> None:
    entry = pretrained.default_for(command)
    weights = download.SHIPPED_WEIGHTS_DIR / entry.filename
    card = read_card(weights)
    assert card is not None and card.arch == entry.arch
    assert card.config == loader.architectures.resolve_config(entry.arch, entry.config)
    assert weights.stat().st_size <= 20 * 1024 * 1024
    model = load_model(entry.name, device="cpu")
    clean = read_array(EXAMPLES / "clean" / "kodim23.png")[CROP]
    degraded = read_array(EXAMPLES / DEGRADED[command] / "kodim23.png")[CROP]
    restored = restore_image(model, np.ascontiguousarray(degraded))
    before = psnr(degraded, clean, data_range=255)
    after = psnr(restored, clean, data_range=255)
    assert after > before + 0.5, f"{command}: {before:.2f} dB -> {after:.2f} dB"
