"""Synthetic degradations: reproducibility, the denoising benchmark protocol, kernel geometry, rain bounds, file I/O."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage

from restorecli.data.degradations import (
    RAIN_PRESETS,
    BlurParams,
    DegradationKind,
    DegradationParams,
    NoiseParams,
    RainParams,
    add_gaussian_noise,
    apply_kernel,
    benchmark_gaussian_noise,
    degrade,
    degrade_files,
    degrade_pixels,
    image_rng,
    linear_motion_kernel,
    make_params,
    rain_layer,
    random_motion_kernel,
    shake_kernel,
)
from restorecli.errors import ConfigError, ImageWriteError
from restorecli.images import read_array, write_array

KIND_PARAMS = [
    ("noise", NoiseParams(sigma_range=(0.0, 50.0))),
    ("blur", BlurParams(kind="linear")),
    ("blur", BlurParams(kind="shake")),
    ("rain", RainParams.preset("heavy")),
]


def smooth_image(height: int = 64, width: int = 80, channels: int = 3) -> np.ndarray:
    """A deterministic float32 test image with edges and gradients (blur must change it)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [0.5 + 0.4 * np.sin(x / (3 + c)) * np.cos(y / (5 + c)) for c in range(channels)]
    image = np.stack(planes, axis=2)
    image[height // 3 : height // 2, width // 4 : width // 2] = 0.1
    return image.astype(np.float32)


def kernel_centroid(kernel: np.ndarray) -> tuple[float, float]:
    rows, cols = np.mgrid[0 : kernel.shape[0], 0 : kernel.shape[1]]
    return float((kernel * rows).sum()), float((kernel * cols).sum())


# --- reproducibility --------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "params"), KIND_PARAMS)
def test_same_seed_same_output_and_different_seed_differs(kind: DegradationKind, params: DegradationParams) -> None:
    image = smooth_image()
    before = image.copy()
    first = degrade(kind, image, np.random.default_rng(7), params)
    again = degrade(kind, image, np.random.default_rng(7), params)
    other = degrade(kind, image, np.random.default_rng(8), params)
    assert first.dtype == np.float32 and first.shape == image.shape
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    np.testing.assert_array_equal(image, before)  # the input is never modified


@pytest.mark.parametrize(("kind", "params"), KIND_PARAMS)
def test_strided_views_degrade_like_their_copies(kind: DegradationKind, params: DegradationParams) -> None:
    view = np.rot90(smooth_image())[:, ::-1]  # what flip/rotation augmentation hands over
    expected = degrade(kind, np.ascontiguousarray(view), np.random.default_rng(1), params)
    np.testing.assert_array_equal(degrade(kind, view, np.random.default_rng(1), params), expected)


def test_image_rng_depends_on_seed_and_name_only() -> None:
    draw = lambda seed, name: image_rng(seed, name).random(4)
    np.testing.assert_array_equal(draw(0, "a.png"), draw(0, "a.png"))
    assert not np.array_equal(draw(0, "a.png"), draw(1, "a.png"))
    assert not np.array_equal(draw(0, "a.png"), draw(0, "b.png"))
    with pytest.raises(ConfigError):
        image_rng(-1, "a.png")


# --- noise --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_benchmark_noise_matches_the_papers_test_scripts(dtype: type) -> None:
    pixels = (np.random.default_rng(3).random((17, 23, 3)) * np.iinfo(dtype).max).astype(dtype)
    # Restormer Denoising/test_gaussian_color_denoising.py, written out by hand.
    np.random.seed(seed=0)
    expected = np.float32(pixels) / float(np.iinfo(dtype).max)
    expected += np.random.normal(0, 25 / 255.0, expected.shape)
    np.random.seed(1234)
    global_state = np.random.random()
    np.random.seed(1234)
    actual = benchmark_gaussian_noise(pixels, 25.0, seed=0)
    assert actual.dtype == np.float32
    np.testing.assert_array_equal(actual, expected)
    assert np.random.random() == global_state  # the global generator is left alone


def test_benchmark_noise_resets_per_image() -> None:
    pixels = np.full((8, 8), 128, dtype=np.uint8)
    np.testing.assert_array_equal(benchmark_gaussian_noise(pixels, 15.0), benchmark_gaussian_noise(pixels, 15.0))
    assert not np.array_equal(benchmark_gaussian_noise(pixels, 15.0, 0), benchmark_gaussian_noise(pixels, 15.0, 1))


def test_noise_has_the_requested_sigma_and_no_clipping_by_default() -> None:
    image = np.full((256, 256, 3), 0.5, dtype=np.float32)
    noisy = add_gaussian_noise(image, np.random.default_rng(0), NoiseParams(sigma=25.0))
    assert abs(float((noisy - image).std()) * 255 - 25.0) < 0.25
    assert abs(float((noisy - image).mean()) * 255) < 0.25
    dark = add_gaussian_noise(np.zeros((64, 64), np.float32), np.random.default_rng(0), NoiseParams())
    assert dark.min() < 0.0  # clip is off by default, as in the protocol


def test_noise_clip_and_quantize() -> None:
    image = np.zeros((64, 64, 3), dtype=np.float32)
    noisy = add_gaussian_noise(image, np.random.default_rng(0), NoiseParams(sigma=50.0, clip=True, quantize=True))
    assert noisy.min() == 0.0 and noisy.max() <= 1.0
    np.testing.assert_allclose(noisy * 255, np.round(noisy * 255), atol=1e-4)


def test_blind_noise_draws_sigma_from_the_range() -> None:
    params = NoiseParams(sigma_range=(10.0, 30.0))
    image = np.full((128, 128), 0.5, dtype=np.float32)
    sigmas = [float((add_gaussian_noise(image, np.random.default_rng(s), params) - 0.5).std()) * 255 for s in range(12)]
    assert 9.5 < min(sigmas) and max(sigmas) < 30.5
    assert max(sigmas) - min(sigmas) > 5.0


def test_noise_params_validation() -> None:
    assert NoiseParams().sigma == 25.0
    assert NoiseParams(sigma_range=[0, 50]).sigma_range == (0.0, 50.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="either sigma or sigma_range"):
        NoiseParams(sigma=10.0, sigma_range=(0.0, 50.0))
    with pytest.raises(ConfigError):
        NoiseParams(sigma=-1.0)
    with pytest.raises(ConfigError):
        NoiseParams(sigma_range=(30.0, 10.0))


# --- blur ---------------------------------------------------------------------------------------


def test_linear_kernel_matches_hand_computed_box_filter() -> None:
    # A segment of length 2 through the centre: box of width 2 (x) bilinear hat = [1/4, 1/2, 1/4].
    expected = np.array([[0, 0, 0], [0.25, 0.5, 0.25], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_allclose(linear_motion_kernel(2.0, 0.0, 3), expected, atol=1e-6)
    np.testing.assert_allclose(linear_motion_kernel(2.0, 90.0, 3), expected.T, atol=1e-6)
    np.testing.assert_array_equal(linear_motion_kernel(0.0, 30.0, 5)[2, 2], 1.0)  # no motion: identity


def test_linear_kernel_support_follows_length() -> None:
    kernel = linear_motion_kernel(10.0, 0.0, 15)
    assert kernel.shape == (15, 15)
    columns = np.flatnonzero(kernel.sum(axis=0) > 1e-6)
    rows = np.flatnonzero(kernel.sum(axis=1) > 1e-6)
    assert list(rows) == [7]
    assert (columns[0], columns[-1]) == (2, 12)  # 10 px of motion centred on column 7


@pytest.mark.parametrize("kind", ["linear", "shake", "mixed"])
def test_random_kernels_sum_to_one_and_keep_the_image_in_place(kind: str) -> None:
    rng = np.random.default_rng(5)
    sizes = set()
    for _ in range(20):
        kernel = random_motion_kernel(rng, BlurParams(kind=kind, kernel_size_range=(5, 15)))  # type: ignore[arg-type]
        size = kernel.shape[0]
        sizes.add(size)
        assert kernel.shape == (size, size) and size % 2 == 1 and 5 <= size <= 15
        assert kernel.dtype == np.float32 and kernel.min() >= 0.0
        assert abs(float(kernel.sum(dtype=np.float64)) - 1.0) < 1e-5
        centre = (size - 1) / 2
        np.testing.assert_allclose(kernel_centroid(kernel), (centre, centre), atol=1e-3)
    assert len(sizes) > 2


def test_requested_kernel_size_is_exact() -> None:
    for size in (3, 9, 31):
        kernel = random_motion_kernel(np.random.default_rng(size), BlurParams(kernel_size_range=(size, size)))
        assert kernel.shape == (size, size)


def test_shake_kernel_fits_its_support_and_is_not_a_line() -> None:
    kernel = shake_kernel(np.random.default_rng(2), 21, length=60.0, anxiety=0.01)
    assert kernel.shape == (21, 21)
    assert abs(float(kernel.sum(dtype=np.float64)) - 1.0) < 1e-5
    occupied = kernel > 1e-4
    rows, cols = np.flatnonzero(occupied.any(axis=1)), np.flatnonzero(occupied.any(axis=0))
    assert rows[-1] - rows[0] > 3 and cols[-1] - cols[0] > 3  # a curve spreads in both directions


@pytest.mark.parametrize("size", [7, 25])  # OpenCV's direct filter, then the FFT path
def test_apply_kernel_is_a_true_convolution_with_mirrored_borders(size: int) -> None:
    image = smooth_image(40, 50)
    kernel = np.random.default_rng(size).random((size, size)).astype(np.float32)
    kernel /= kernel.sum()
    planes = [scipy.ndimage.convolve(image[:, :, c].astype(np.float64), kernel, mode="mirror") for c in range(3)]
    expected = np.stack(planes, axis=2)
    np.testing.assert_allclose(apply_kernel(image, kernel), expected, atol=1e-5)
    np.testing.assert_allclose(apply_kernel(image[:, :, 0], kernel), expected[:, :, 0], atol=1e-5)


def test_blur_returns_its_kernel_on_request() -> None:
    image = smooth_image()
    blurred, kernel = degrade("blur", image, np.random.default_rng(1), BlurParams(), return_kernel=True)
    assert kernel is not None
    np.testing.assert_allclose(blurred, apply_kernel(image, kernel), atol=1e-6)
    assert abs(float(blurred.mean()) - float(image.mean())) < 2e-3
    assert degrade("noise", image, np.random.default_rng(1), return_kernel=True)[1] is None


def test_blur_params_validation() -> None:
    with pytest.raises(ConfigError, match="odd"):
        BlurParams(kernel_size_range=(8, 31))
    with pytest.raises(ConfigError):
        BlurParams(kind="wobble")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        BlurParams(length_range=(0.5, 1.5))


# --- rain ---------------------------------------------------------------------------------------


ADDITIVE_PRESETS = sorted(
    name for name, params in RAIN_PRESETS.items() if params.blend == "add" and not params.veiled and not params.mixture
)


@pytest.mark.parametrize("preset", ADDITIVE_PRESETS)  # screen blending and the veil: tests/test_rain.py
def test_rain_brightens_and_stays_in_range(preset: str) -> None:
    image = smooth_image(96, 96)
    rainy = degrade("rain", image, np.random.default_rng(0), RainParams.preset(preset))
    assert rainy.min() >= 0.0 and rainy.max() <= 1.0
    assert np.all(rainy >= image - 1e-7)  # additive: rain only adds light
    assert float(rainy.mean()) > float(image.mean()) + 0.005
    unclipped = np.all(rainy < 1.0, axis=2)
    spread = np.ptp((rainy - image)[unclipped], axis=1)
    assert float(spread.max()) < 1e-5  # grey streaks: the same amount in every channel


def test_heavier_presets_add_more_rain() -> None:
    mean_layer = {
        name: np.mean([rain_layer(128, 128, np.random.default_rng(s), RAIN_PRESETS[name]).mean() for s in range(4)])
        for name in ("light", "medium", "rain100l", "rain100h")
    }
    assert mean_layer["light"] < mean_layer["medium"] < mean_layer["rain100h"]
    assert mean_layer["rain100l"] < mean_layer["rain100h"]


def test_rain_streaks_follow_the_angle() -> None:
    params = RainParams(angle_range=(0.0, 0.0), angle_jitter=0.0, length_range=(30.0, 30.0), layers_range=(1, 1))
    layer = rain_layer(128, 128, np.random.default_rng(0), params)
    centred = layer - layer.mean()
    vertical = float((centred[4:] * centred[:-4]).mean())
    horizontal = float((centred[:, 4:] * centred[:, :-4]).mean())
    assert vertical > 5 * max(horizontal, 1e-12)


def test_no_drops_no_rain() -> None:
    image = smooth_image()
    dry = RainParams(density_range=(0.0, 0.0))
    np.testing.assert_array_equal(degrade("rain", image, np.random.default_rng(0), dry), image)


def test_rain_presets_accept_overrides_and_reject_unknown_names() -> None:
    params = RainParams.preset("light", angle_range=(10, 20))
    assert params.angle_range == (10.0, 20.0) and params.density_range == RAIN_PRESETS["light"].density_range
    with pytest.raises(ConfigError):
        RainParams.preset("drizzle")
    with pytest.raises(ConfigError):
        RainParams.preset("light", wind=3)


# --- dispatcher and recipes ---------------------------------------------------------------------


def test_make_params_from_recipe_mappings() -> None:
    blur = make_params("blur", {"kernel_size_range": [5, 9], "kind": "linear"})
    assert blur == BlurParams(kernel_size_range=(5, 9), kind="linear")
    rain = make_params("rain", {"preset": "heavy", "layers_range": [1, 1]})
    assert rain == RainParams.preset("heavy", layers_range=(1, 1))
    assert make_params("noise", None) == NoiseParams()
    with pytest.raises(ConfigError, match="did you mean 'sigma_range'"):
        make_params("noise", {"sigma_rang": [0, 50]})
    with pytest.raises(ConfigError):
        make_params("snow", {})


def test_degrade_rejects_mismatched_params_and_integer_images() -> None:
    with pytest.raises(ConfigError, match="BlurParams"):
        degrade("blur", smooth_image(), np.random.default_rng(0), NoiseParams())
    with pytest.raises(ConfigError, match="float"):
        degrade("noise", np.zeros((4, 4, 3), np.uint8), np.random.default_rng(0))


# --- files --------------------------------------------------------------------------------------


def write_images(folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    images = {
        "rgb.png": (smooth_image(40, 48) * 255).astype(np.uint8),
        "deep.png": (smooth_image(40, 48) * 65535).astype(np.uint16),
        "grey.png": (smooth_image(40, 48, 1)[:, :, 0] * 255).astype(np.uint8),
        "alpha.png": np.concatenate(
            [(smooth_image(40, 48) * 255).astype(np.uint8), rng.integers(0, 256, (40, 48, 1), dtype=np.uint8)], axis=2
        ),
    }
    for name, pixels in images.items():
        write_array(folder / name, pixels)
    return images


FILE_CASES = [("noise", NoiseParams(clip=True, quantize=True)), ("blur", BlurParams()), ("rain", RainParams())]


@pytest.mark.parametrize(("kind", "params"), FILE_CASES)
def test_degrade_files_keeps_names_bit_depth_and_alpha(
    tmp_path: Path, kind: DegradationKind, params: DegradationParams
) -> None:
    images = write_images(tmp_path / "in")
    summary = degrade_files(kind, tmp_path / "in", tmp_path / "out", params, 3, progress=False)
    assert not summary.failed and len(summary.written) == len(images)
    for name, pixels in images.items():
        result = read_array(tmp_path / "out" / name)
        assert result.dtype == pixels.dtype and result.shape == pixels.shape
        assert not np.array_equal(result, pixels)
        if name == "alpha.png":
            np.testing.assert_array_equal(result[:, :, 3], pixels[:, :, 3])
    again = degrade_files(kind, tmp_path / "in", tmp_path / "again", params, 3, progress=False)
    other = degrade_files(kind, tmp_path / "in", tmp_path / "other", params, 4, progress=False)
    assert len(again.written) == len(other.written) == len(images)
    np.testing.assert_array_equal(read_array(tmp_path / "again/rgb.png"), read_array(tmp_path / "out/rgb.png"))
    assert not np.array_equal(read_array(tmp_path / "other/rgb.png"), read_array(tmp_path / "out/rgb.png"))


def test_a_file_gets_the_same_degradation_alone_or_in_a_folder(tmp_path: Path) -> None:
    write_images(tmp_path / "in")
    degrade_files("rain", tmp_path / "in", tmp_path / "all", RainParams(), seed=1, progress=False)
    degrade_files("rain", tmp_path / "in/rgb.png", tmp_path / "one.png", RainParams(), seed=1, progress=False)
    np.testing.assert_array_equal(read_array(tmp_path / "one.png"), read_array(tmp_path / "all/rgb.png"))


def test_noise_files_follow_the_benchmark_formula(tmp_path: Path) -> None:
    pixels = write_images(tmp_path / "in")["rgb.png"]
    np.random.seed(0)
    reference = np.float32(pixels) / 255.0
    reference += np.random.normal(0, 25 / 255.0, reference.shape)
    degrade_files("noise", tmp_path / "in", tmp_path / "png", NoiseParams(clip=True, quantize=True), progress=False)
    expected_png = np.clip(np.round(reference * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(read_array(tmp_path / "png/rgb.png"), expected_png)
    degrade_files("noise", tmp_path / "in", tmp_path / "raw", NoiseParams(), output_format="npy", progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "raw/rgb.npy"), reference)


def test_per_file_noise_differs_between_images_of_the_same_content(tmp_path: Path) -> None:
    pixels = np.full((16, 16, 3), 128, np.uint8)
    bench = [degrade_pixels("noise", pixels, NoiseParams(), 0, name)[0] for name in ("a.png", "b.png")]
    per_file = [degrade_pixels("noise", pixels, NoiseParams(), 0, name, "per-file")[0] for name in ("a.png", "b.png")]
    np.testing.assert_array_equal(bench[0], bench[1])
    assert not np.array_equal(per_file[0], per_file[1])


def test_jpeg_inputs_become_png_and_kernels_go_to_a_subfolder(tmp_path: Path) -> None:
    write_array(tmp_path / "in/photo.jpg", (smooth_image(32, 32) * 255).astype(np.uint8))
    summary = degrade_files("blur", tmp_path / "in", tmp_path / "out", BlurParams(), save_kernel=True, progress=False)
    assert summary.written == (tmp_path / "out/photo.png",)
    kernel = np.load(tmp_path / "out/kernels/photo.npy")
    assert abs(float(kernel.sum(dtype=np.float64)) - 1.0) < 1e-5
    assert read_array(tmp_path / "out/kernels/photo.png").max() == 255
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["kernels", "photo.png"]


def test_bad_files_are_skipped_and_reported(tmp_path: Path) -> None:
    write_images(tmp_path / "in")
    (tmp_path / "in/broken.png").write_bytes(b"not a png")
    params = NoiseParams(clip=True, quantize=True)
    summary = degrade_files("noise", tmp_path / "in", tmp_path / "out", params, progress=False)
    assert [path.name for path, _ in summary.failed] == ["broken.png"]
    assert len(summary.written) == 4 and not (tmp_path / "out/broken.png").exists()


def test_inputs_are_never_overwritten(tmp_path: Path) -> None:
    images = write_images(tmp_path / "in")
    with pytest.raises(ImageWriteError, match="input"):
        degrade_files("blur", tmp_path / "in", tmp_path / "in", BlurParams(), progress=False)
    with pytest.raises(ImageWriteError, match="input"):
        degrade_files("blur", tmp_path / "in/rgb.png", tmp_path / "in/rgb.png", BlurParams(), progress=False)
    np.testing.assert_array_equal(read_array(tmp_path / "in/rgb.png"), images["rgb.png"])


def test_integer_output_needs_clip_and_quantize(tmp_path: Path) -> None:
    write_images(tmp_path / "in")
    with pytest.raises(ConfigError, match="npy"):
        degrade_files("noise", tmp_path / "in", tmp_path / "out", NoiseParams(quantize=True), progress=False)
    with pytest.raises(ConfigError, match="fixed sigma"):
        blind = NoiseParams(sigma_range=(0, 50))
        degrade_files("noise", tmp_path / "in", tmp_path / "out", blind, output_format="npy", progress=False)
    assert not (tmp_path / "out").exists()
