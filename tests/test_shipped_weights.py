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


# The benchmark table each shipped card carries (bench/bench_denoise_levels.py and
# bench/bench_derain_presets.py with --card): every noise level in colour and grey, every rain model.
CARD_TABLES = {
    "denoise": [f"{mode} sigma {sigma}" for mode in ("colour", "grey") for sigma in (15, 25, 50)],
    "derain": ["rain100l seed 1717", "rain100h seed 1717", "photoshop seed 1717", "heavy seed 1717"]
    + ["0.1 thin streaks seed 0"],
}


@pytest.mark.parametrize("command", sorted(CARD_TABLES))
def test_shipped_cards_list_their_benchmark_table(command: str) -> None:
    card = read_card(download.SHIPPED_WEIGHTS_DIR / pretrained.default_for(command).filename)
    assert card is not None
    assert [row.case for row in card.benchmarks] == CARD_TABLES[command]
    for row in card.benchmarks:
        assert row.images == 24 and row.source.endswith("Kodak24") and row.protocol.startswith("bench/")
        assert row.psnr > row.input_psnr + 5
    # ... and the recipe, the data and the wall time of every training stage.
    assert card.recipe and card.data["train"]["images"] > 0
    assert card.chain() and all(stage.wall_time_s > 0 and stage.iterations > 0 for stage in card.chain())
