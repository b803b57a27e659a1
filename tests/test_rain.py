"""Benchmark-like rain presets: measured streak statistics, the heavy-rain formula, mixtures, determinism, cost."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage

from restorecli.data.degradations import RAIN_PRESETS, RainParams, degrade, make_params, rain_layer
from restorecli.data.degradations import rain as rain_module
from restorecli.data.degradations.rain import composite, pick_component, streak_kernel
from restorecli.errors import ConfigError
from restorecli.train.recipe import load_recipe

SINGLE_PRESETS = [name for name, params in RAIN_PRESETS.items() if not params.mixture]
BENCHMARK_PRESETS = ["rain100l", "rain100h", "photoshop", "heavy"]


def streak_angle(layer: np.ndarray) -> float:
    """Dominant streak direction in degrees from vertical (positive falls to the right), from the structure tensor.

    Gradients run across streaks: their orientation ``phi`` (from +x, y down) is minus the streak's angle.
    Gaussian derivatives, because central differences bias the orientation of thin lines by degrees.
    """
    layer = layer.astype(np.float64)
    grad_x = scipy.ndimage.gaussian_filter(layer, 1.5, order=(0, 1))
    grad_y = scipy.ndimage.gaussian_filter(layer, 1.5, order=(1, 0))
    jxx, jyy, jxy = float((grad_x**2).sum()), float((grad_y**2).sum()), float((grad_x * grad_y).sum())
    return -0.5 * math.degrees(math.atan2(2.0 * jxy, jxx - jyy))


def streak_extents(layer: np.ndarray, angle: float) -> tuple[list[float], list[float]]:
    """Length and width of each streak that does not touch the border, at half of its own peak.

    Streaks are the connected components of the visible layer; drops differ in brightness, so each
    is measured at half of its own maximum: the length is the extent along ``angle``, the width the
    half-maximum area over that length (an extent across would grow with the staircase of slanted lines).
    """
    labels, _ = scipy.ndimage.label(layer > 0.02)
    along_axis = np.array([math.sin(math.radians(angle)), math.cos(math.radians(angle))])  # (x, y)
    lengths, widths = [], []
    for index, window in enumerate(scipy.ndimage.find_objects(labels), start=1):
        touches = window[0].start == 0 or window[1].start == 0
        touches |= window[0].stop == layer.shape[0] or window[1].stop == layer.shape[1]
        values = np.where(labels[window] == index, layer[window], 0.0)
        rows, cols = np.nonzero(values >= 0.5 * values.max())
        if touches:
            continue
        along = cols * along_axis[0] + rows * along_axis[1]
        lengths.append(float(np.ptp(along)) + 1.0)
        widths.append(len(rows) / lengths[-1])
    return lengths, widths


def isolated(params: RainParams, density: float = 0.0002) -> RainParams:
    """One sparse, untapered, uniform layer of ``params``' streaks, so that single streaks can be measured."""
    return replace(params, density_range=(density, density), layers_range=(1, 1), taper=0.0, modulation=0.0)


# --- geometry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("angle", [-40.0, -15.0, 0.0, 20.0, 45.0])
def test_measured_angle_matches_the_requested_one(angle: float) -> None:
    params = RainParams(
        angle_range=(angle, angle), angle_jitter=0.0, length_range=(40, 40), width_range=(2, 2), layers_range=(1, 1)
    )
    assert streak_angle(rain_layer(192, 192, np.random.default_rng(0), params)) == pytest.approx(angle, abs=2.0)


@pytest.mark.parametrize("angle", [0.0, 30.0])
def test_measured_length_width_and_density_match_the_requested_ones(angle: float) -> None:
    density, size = 0.0008, 384
    params = RainParams(
        density_range=(density, density),
        angle_range=(angle, angle),
        angle_jitter=0.0,
        length_range=(24, 24),
        width_range=(3, 3),
        intensity_range=(0.5, 0.5),
        layers_range=(1, 1),
    )
    layer = rain_layer(size, size, np.random.default_rng(1), params)
    lengths, widths = streak_extents(layer, angle)
    assert float(np.median(lengths)) == pytest.approx(24.0, abs=2.5)
    assert float(np.median(widths)) == pytest.approx(3.0, abs=0.75)
    # Density from the light in the frame: drops seeded around it (the margin) make the layer
    # stationary, so its mean is density x mean drop brightness (0.75) x the light of one streak.
    kernel = streak_kernel(24.0, angle, 3.0)
    one_streak = 0.5 * float(kernel.sum() / kernel.max())
    assert float(layer.mean()) / (0.75 * one_streak) == pytest.approx(density, rel=0.1)


@pytest.mark.parametrize("name", BENCHMARK_PRESETS)
def test_preset_streaks_stay_within_the_preset_ranges(name: str) -> None:
    preset = RAIN_PRESETS[name]
    for seed in range(3):
        layer = rain_layer(256, 256, np.random.default_rng(seed), isolated(preset))
        angle = streak_angle(layer)
        low, high = preset.angle_range
        assert low - preset.angle_jitter - 3.0 <= angle <= high + preset.angle_jitter + 3.0
        lengths, widths = streak_extents(layer, angle)
        assert lengths, f"no isolated streak for seed {seed}"
        # Short, wide streaks reach beyond their length by about their width.
        longest = preset.length_range[1] + preset.width_range[1]
        assert preset.length_range[0] - 2.0 <= np.median(lengths) <= longest + 2.0
        assert preset.width_range[0] - 0.5 <= np.median(widths) <= preset.width_range[1] + 0.75


def test_rain100h_overlays_five_directions_and_rain100l_one(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[tuple[float, float, float]] = []
    build = rain_module.streak_kernel

    def recording(length: float, angle: float, width: float, taper: float = 0.0) -> np.ndarray:
        drawn.append((length, angle, width))
        return build(length, angle, width, taper)

    monkeypatch.setattr(rain_module, "streak_kernel", recording)
    for name, layers in (("rain100h", 5), ("rain100l", 1)):
        preset = RAIN_PRESETS[name]
        for seed in range(3):
            drawn.clear()
            rain_layer(32, 32, np.random.default_rng(seed), preset)
            lengths, angles, widths = (np.array(values) for values in zip(*drawn))
            assert len(angles) == layers
            assert np.all((preset.length_range[0] <= lengths) & (lengths <= preset.length_range[1]))
            assert np.all((preset.width_range[0] <= widths) & (widths <= preset.width_range[1]))
            assert np.ptp(angles) <= 2 * preset.angle_jitter
            if layers > 1:
                assert np.ptp(angles) > 3.0  # several directions, not one


def test_taper_fades_the_streak_ends() -> None:
    flat = streak_kernel(40.0, 0.0, 2.0)
    tapered = streak_kernel(40.0, 0.0, 2.0, taper=1.0)
    column = tapered[:, tapered.shape[1] // 2] / tapered.max()
    centre = len(column) // 2
    assert column[centre] == pytest.approx(1.0) and column[centre - 18] < 0.2
    flat_column = flat[:, flat.shape[1] // 2] / flat.max()
    assert flat_column[centre - 18] > 0.9
    assert streak_angle(tapered) == pytest.approx(0.0, abs=1.0)


# --- composition --------------------------------------------------------------------------------


def test_heavy_rain_formula_on_constant_images() -> None:
    background = np.full((8, 8, 3), 0.2, np.float32)
    # O = alpha (B + S) + (1 - alpha) A with alpha = 0.7, A = 0.9: 0.7 * 0.7 + 0.3 * 0.9 = 0.76.
    streaks = np.full((8, 8), 0.5, np.float32)
    np.testing.assert_allclose(composite(background, streaks, "add", 0.7, 0.9), 0.76, atol=1e-6)
    # Screen blending: 0.7 * (1 - 0.8 * 0.5) + 0.27 = 0.69.
    np.testing.assert_allclose(composite(background, np.float32(0.5), "screen", 0.7, 0.9), 0.69, atol=1e-6)
    # The sensor saturates last: 0.7 * (0.8 + 0.5) + 0.27 = 1.18 -> 1.
    np.testing.assert_allclose(composite(background + 0.6, np.float32(0.5), "add", 0.7, 0.9), 1.0)
    # End to end without streaks: 0.7 * 0.2 + 0.3 * 0.9 = 0.41 everywhere.
    veil_only = RainParams.preset(
        "heavy",
        density_range=(0.0, 0.0),
        transmission_range=(0.7, 0.7),
        transmission_variation=0.0,
        atmosphere_range=(0.9, 0.9),
    )
    np.testing.assert_allclose(degrade("rain", background, np.random.default_rng(0), veil_only), 0.41, atol=1e-6)


def test_heavy_rain_transmission_varies_smoothly_within_its_bounds() -> None:
    background = np.full((128, 160), 0.2, np.float32)
    veil_only = RainParams.preset(
        "heavy",
        density_range=(0.0, 0.0),
        transmission_range=(0.7, 0.7),
        transmission_variation=0.1,
        atmosphere_range=(0.9, 0.9),
    )
    rainy = degrade("rain", background, np.random.default_rng(0), veil_only)
    alpha = (0.9 - rainy) / 0.7  # solve O = alpha B + (1 - alpha) A for alpha
    assert 0.6 - 1e-5 <= alpha.min() and alpha.max() <= 0.8 + 1e-5 and np.ptp(alpha) > 0.05
    assert float(np.abs(np.diff(alpha, axis=1)).max()) < 0.01  # smooth: no step between neighbours


def test_screen_blending_adds_the_same_layer_in_every_channel() -> None:
    background = np.broadcast_to(np.array([0.1, 0.4, 0.7], np.float32), (96, 96, 3)).copy()
    rainy = degrade("rain", background, np.random.default_rng(0), RainParams.preset("photoshop"))
    layer = (rainy - background) / (1.0 - background)  # invert O = 1 - (1 - B)(1 - S)
    assert float(layer.max()) > 0.05
    np.testing.assert_allclose(layer[..., 0], layer[..., 2], atol=1e-5)
    assert np.all(rainy >= background - 1e-7) and rainy.max() <= 1.0


# --- presets, mixture, determinism --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(RAIN_PRESETS))
@pytest.mark.parametrize("shape", [(64, 80, 3), (48, 40)])
def test_every_preset_is_deterministic_and_keeps_shape_dtype_and_range(name: str, shape: tuple[int, ...]) -> None:
    image = np.random.default_rng(9).random(shape).astype(np.float64)  # any float dtype in, float32 out
    params = RainParams.preset(name)
    first = degrade("rain", image, np.random.default_rng(5), params)
    assert first.shape == shape and first.dtype == np.float32
    assert 0.0 <= first.min() and first.max() <= 1.0
    np.testing.assert_array_equal(first, degrade("rain", image, np.random.default_rng(5), params))
    assert not np.array_equal(first, degrade("rain", image, np.random.default_rng(6), params))


def test_mixture_draws_its_presets_with_their_weights() -> None:
    mixture = RAIN_PRESETS["mixture"]
    rng = np.random.default_rng(0)
    drawn = [pick_component(mixture, rng) for _ in range(4000)]
    for name, weight in mixture.mixture:
        share = sum(params is RAIN_PRESETS[name] for params in drawn) / len(drawn)
        assert share == pytest.approx(weight / sum(w for _, w in mixture.mixture), abs=0.03)
    assert pick_component(RAIN_PRESETS["rain100l"], rng) is RAIN_PRESETS["rain100l"]


def test_mixtures_from_recipes_and_their_errors() -> None:
    table = make_params("rain", {"mixture": {"rain100h": 2, "photoshop": 1}})
    assert table == RainParams(mixture=(("rain100h", 2.0), ("photoshop", 1.0)))
    assert make_params("rain", {"preset": "mixture"}) == RAIN_PRESETS["mixture"]
    assert make_params("rain", {"mixture": [["heavy", 1]]}).mixture == (("heavy", 1.0),)
    with pytest.raises(ConfigError, match="mixture presets among"):
        RainParams(mixture={"drizzle": 1.0})
    with pytest.raises(ConfigError, match="mixture presets among"):
        RainParams(mixture={"mixture": 1.0})  # no nesting
    with pytest.raises(ConfigError, match="weight"):
        RainParams(mixture={"heavy": -1.0})
    with pytest.raises(ConfigError, match="positive"):
        RainParams(mixture={"heavy": 0.0})
    with pytest.raises(ConfigError, match="density_range"):
        RainParams.preset("mixture", density_range=(0.0, 0.1))  # would be ignored: refuse instead
    with pytest.raises(ConfigError, match="blend"):
        RainParams(blend="multiply")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="taper"):
        RainParams(taper=1.5)


def test_version_0_1_presets_draw_no_extra_numbers() -> None:
    """Off-by-default features consume nothing: a 0.1 preset leaves the stream where 0.1 left it."""
    for name in ("light", "medium", "mixed"):
        preset = RAIN_PRESETS[name]
        assert preset.taper == 0.0 and preset.modulation == 0.0 and not preset.veiled and preset.blend == "add"
        with_veil_settings = replace(preset, atmosphere_range=(0.1, 0.2), transmission_variation=0.3)
        image = np.full((32, 32, 3), 0.3, np.float32)
        first, second = np.random.default_rng(4), np.random.default_rng(4)
        expected = degrade("rain", image, first, preset)
        np.testing.assert_array_equal(degrade("rain", image, second, with_veil_settings), expected)
        assert first.random() == second.random()


def test_work_per_patch_is_one_convolution_per_layer_over_a_bounded_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """A cost bound that does not depend on the machine: what the training loop pays per patch."""
    shapes: list[tuple[int, ...]] = []
    convolve = rain_module.convolve_valid

    def counting(padded: np.ndarray, kernel: np.ndarray) -> np.ndarray:
        shapes.append(padded.shape)
        return convolve(padded, kernel)

    monkeypatch.setattr(rain_module, "convolve_valid", counting)
    for name in SINGLE_PRESETS:
        preset = RAIN_PRESETS[name]
        shapes.clear()
        degrade("rain", np.zeros((256, 256, 3), np.float32), np.random.default_rng(0), preset)
        assert preset.layers_range[0] <= len(shapes) <= preset.layers_range[1]
        reach = math.ceil(preset.length_range[1] / 2) + math.ceil(3 * preset.width_range[1] / 2.3548)
        assert all(max(shape) <= 256 + 2 * reach for shape in shapes)


def test_derain_stage2_recipe_trains_on_the_mixture_and_validates_on_held_out_rain() -> None:
    recipe = load_recipe(Path(__file__).parents[1] / "recipes" / "derain-stage2.toml")
    assert recipe.degradation is not None and make_params("rain", recipe.degradation.params) == RAIN_PRESETS["mixture"]
    assert recipe.model.weights == "runs/derain-stage1-shipped/restorecli-derain.safetensors"
    assert recipe.runtime.precision == "bf16" and recipe.runtime.threads == 1
    validation = recipe.validation
    assert validation is not None and validation.clean == "../shared/data/val/Kodak24"
    assert validation.degradation is not None and validation.degradation.params == {"preset": "rain100h"}
    assert validation.seed not in (recipe.seed, 0)  # not the training stream, not the 0.1 validation set
