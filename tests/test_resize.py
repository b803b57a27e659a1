"""MATLAB-compatible bicubic imresize and ``restore degrade downscale``.

The reference values are derived by hand from MATLAB's algorithm (``imresize.m``): output pixel
``i`` (1-based) sits at input coordinate ``u = i / s + (1 - 1 / s) / 2``; when shrinking, the
Keys cubic (a = -0.5) is stretched to ``h(d) = s * cubic(s * d)`` (support ``4 / s``); taps past
the ends mirror back (symmetric padding); weights are normalised to sum 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.data.resize import imresize
from restorecli.errors import ConfigError
from restorecli.images import read_array, write_array

SIGNAL = np.array([10.0, 40.0, 20.0, 80.0, 50.0, 90.0, 30.0, 60.0])


def keys_cubic(x: float) -> float:
    """Keys 1981, a = -0.5, written out piecewise."""
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def hand_resize(signal: np.ndarray, scale: float, taps: list[tuple[float, list[int]]]) -> np.ndarray:
    """Outputs from hand-listed (centre u, 1-based mirrored source index per tap j = first..last)."""
    outputs = []
    for centre, sources in taps:
        first = int(np.floor(centre - 2 / scale)) + 1  # the first tap strictly inside the support
        distances = [centre - (first + k) for k in range(len(sources))]
        weights = np.array([scale * keys_cubic(scale * d) for d in distances])
        outputs.append(float(weights @ signal[np.array(sources) - 1] / weights.sum()))
    return np.array(outputs)


# x1/2 of 8 samples: centres 1.5, 3.5, 5.5, 7.5; support |d| < 4, so taps j = u-3.5 .. u+3.5;
# j <= 0 mirrors to 1 - j and j > 8 to 17 - j.
HALF_TAPS = [
    (1.5, [3, 2, 1, 1, 2, 3, 4, 5]),  # j = -2..5
    (3.5, [1, 1, 2, 3, 4, 5, 6, 7]),  # j = 0..7
    (5.5, [2, 3, 4, 5, 6, 7, 8, 8]),  # j = 2..9
    (7.5, [4, 5, 6, 7, 8, 8, 7, 6]),  # j = 4..11
]
# x1/4 of 8 samples: centres 2.5, 6.5; support |d| < 8, so 16 taps j = u-7.5 .. u+7.5.
QUARTER_TAPS = [
    (2.5, [6, 5, 4, 3, 2, 1, 1, 2, 3, 4, 5, 6, 7, 8, 8, 7]),  # j = -5..10
    (6.5, [2, 1, 1, 2, 3, 4, 5, 6, 7, 8, 8, 7, 6, 5, 4, 3]),  # j = -1..14
]


def test_hand_weights_of_the_half_kernel() -> None:
    """The x1/2 weights are 0.5 * cubic at distances 0.125..0.875 (step 0.25): exact binary fractions."""
    weights = [0.5 * keys_cubic(0.5 * d) for d in (3.5, 2.5, 1.5, 0.5)]
    assert weights == [-0.01171875, -0.03515625, 0.11328125, 0.43359375]
    assert 2 * sum(weights) == 1.0


@pytest.mark.parametrize(("scale", "taps", "size"), [(0.5, HALF_TAPS, 4), (0.25, QUARTER_TAPS, 2)])
def test_downscaling_matches_the_hand_computed_case(scale: float, taps: list, size: int) -> None:
    expected = hand_resize(SIGNAL, scale, taps)
    row = imresize(SIGNAL[None, :], scale)  # one row: the row pass mirrors it onto itself
    assert row.shape == (1, size)
    np.testing.assert_allclose(row[0], expected, rtol=0, atol=1e-12)
    column = imresize(SIGNAL[:, None].astype(np.float32), scale)
    assert column.dtype == np.float32
    np.testing.assert_allclose(column[:, 0], expected, rtol=1e-6)
    # Separable: an outer product resizes to the outer product of the 1-D results.
    np.testing.assert_allclose(imresize(np.outer(SIGNAL, SIGNAL[::-1]), scale), np.outer(expected, expected[::-1]))


def test_integer_images_are_rounded_half_away_from_zero_after_each_pass() -> None:
    expected = hand_resize(SIGNAL, 0.5, HALF_TAPS)
    pixels = imresize(SIGNAL[None, :].astype(np.uint8), 0.5)
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels[0], np.floor(expected + 0.5).astype(np.uint8))
    # Overshoot past the type's range saturates: a bright step rings above 255 and below 0.
    step = np.array([[0, 0, 0, 0, 255, 255, 255, 255]], dtype=np.uint8)
    ringing = imresize(step.astype(np.float64), 0.5)
    assert ringing.min() < 0 and ringing.max() > 255
    np.testing.assert_array_equal(imresize(step, 0.5), np.clip(np.floor(ringing + 0.5), 0, 255).astype(np.uint8))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2.0])
def test_a_constant_image_stays_constant(dtype: type, scale: float) -> None:
    value = 0.3 if np.issubdtype(dtype, np.floating) else 173
    image = np.full((13, 10, 3), value, dtype=dtype)
    resized = imresize(image, scale)
    assert resized.dtype == image.dtype
    assert resized.shape == (int(np.ceil(13 * scale)), int(np.ceil(10 * scale)), 3)
    np.testing.assert_allclose(resized, value, rtol=1e-6)


def test_scale_one_is_the_identity() -> None:
    rng = np.random.default_rng(0)
    for image in (rng.integers(0, 65536, (7, 9), dtype=np.uint16), rng.random((5, 6, 3))):
        np.testing.assert_allclose(imresize(image, 1.0), image, rtol=0, atol=1e-9)


def test_channels_are_independent_and_output_shape_is_honoured() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (17, 23, 4), dtype=np.uint8)
    resized = imresize(image, 0.25)
    assert resized.shape == (5, 6, 4)
    for channel in range(4):
        np.testing.assert_array_equal(resized[:, :, channel], imresize(image[:, :, channel], 0.25))
    assert imresize(image, output_shape=(4, 11)).shape == (4, 11, 4)


@pytest.mark.parametrize(
    ("image", "kwargs"),
    [
        (np.zeros((4, 4), np.uint8), {}),
        (np.zeros((4, 4), np.uint8), {"scale": 0.5, "output_shape": (2, 2)}),
        (np.zeros((4, 4), np.uint8), {"scale": 0.0}),
        (np.zeros((4, 4), np.uint8), {"output_shape": (0, 2)}),
        (np.zeros((4, 4), np.int32), {"scale": 0.5}),
        (np.zeros((4,), np.uint8), {"scale": 0.5}),
    ],
)
def test_invalid_requests_raise_config_errors(image: np.ndarray, kwargs: dict) -> None:
    with pytest.raises(ConfigError, match="Expected"):
        imresize(image, **kwargs)


def test_degrade_downscale_writes_matlab_bicubic_pngs(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    clean = tmp_path / "hr"
    colour = rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)
    deep = rng.integers(0, 65536, (16, 12, 4), dtype=np.uint16)
    write_array(clean / "a.png", colour)
    write_array(clean / "b.png", deep)
    runner = CliRunner()
    result = runner.invoke(app, ["degrade", "downscale", "--scale", "4", str(clean), str(tmp_path / "lr"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "downscale" and summary["written"] == 2 and summary["settings"]["scale"] == 4
    lr_colour, lr_deep = read_array(tmp_path / "lr" / "a.png"), read_array(tmp_path / "lr" / "b.png")
    assert lr_colour.shape == (6, 5, 3) and lr_colour.dtype == np.uint8
    assert lr_deep.shape == (4, 3, 4) and lr_deep.dtype == np.uint16
    np.testing.assert_array_equal(lr_colour, imresize(colour, 0.25))
    np.testing.assert_array_equal(lr_deep, imresize(deep, 0.25))
    again = runner.invoke(app, ["degrade", "downscale", "--scale", "4", str(clean), str(tmp_path / "lr")])
    assert again.exit_code == 0 and "Wrote 2 downscale image(s)" in again.stdout
    np.testing.assert_array_equal(read_array(tmp_path / "lr" / "a.png"), lr_colour)


def test_degrade_downscale_refuses_factor_one_and_reports_broken_files(tmp_path: Path) -> None:
    runner = CliRunner()
    refused = runner.invoke(app, ["degrade", "downscale", "--scale", "1", str(tmp_path), str(tmp_path / "lr")])
    assert refused.exit_code == 2
    write_array(tmp_path / "good.png", np.zeros((8, 8), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    result = runner.invoke(app, ["degrade", "downscale", "--scale", "2", str(tmp_path), str(tmp_path / "lr")])
    assert result.exit_code == 1
    assert "Skipped" in result.stderr and "broken.png" in result.stderr
    assert read_array(tmp_path / "lr" / "good.png").shape == (4, 4)
