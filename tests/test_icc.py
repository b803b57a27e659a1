"""Colour profiles: spliced into encoded PNG and JPEG bytes, read back by Pillow, carried by restore."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from restorecli.cli.app import app
from restorecli.icc import embed_icc_profile, read_icc_profile
from restorecli.images import encode_array, read_array, write_array

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _grey_profile() -> bytes:
    """A profile whose header says GRAY (only the colour-space field is read here)."""
    return SRGB[:16] + b"GRAY" + SRGB[20:]


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
@pytest.mark.parametrize("size", [len(SRGB), 150_000])  # one JPEG segment, and three
def test_a_profile_is_embedded_and_the_pixels_are_untouched(suffix: str, size: int) -> None:
    profile = (SRGB * (size // len(SRGB) + 1))[:size]
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    plain = encode_array(pixels, suffix)
    tagged = embed_icc_profile(plain, suffix, profile, 3)
    with Image.open(io.BytesIO(tagged)) as image:
        assert image.info.get("icc_profile") == profile
        decoded = np.asarray(image.convert("RGB"))
    with Image.open(io.BytesIO(plain)) as image:
        np.testing.assert_array_equal(decoded, np.asarray(image.convert("RGB")))


def test_a_profile_that_does_not_fit_the_pixels_or_format_is_left_out() -> None:
    rgb = np.zeros((8, 8, 3), np.uint8)
    grey = np.zeros((8, 8), np.uint8)
    assert embed_icc_profile(encode_array(grey, ".png"), ".png", SRGB, 1) == encode_array(grey, ".png")
    assert embed_icc_profile(encode_array(rgb, ".bmp"), ".bmp", SRGB, 3) == encode_array(rgb, ".bmp")
    tagged = embed_icc_profile(encode_array(grey, ".png"), ".png", _grey_profile(), 1)
    with Image.open(io.BytesIO(tagged)) as image:
        assert image.info["icc_profile"] == _grey_profile()


def test_restore_carries_the_input_profile(checkpoint: Path, tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (32, 40, 3), dtype=np.uint8)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(pixels).save(folder / "p3.jpg", icc_profile=SRGB, quality=95)
    Image.fromarray(pixels).save(folder / "plain.png")
    result = CliRunner().invoke(app, ["denoise", str(folder), str(tmp_path / "out"), "--model", str(checkpoint), "-q"])
    assert result.exit_code == 0, result.output
    assert read_icc_profile(tmp_path / "out/p3.jpg") == SRGB
    assert read_icc_profile(tmp_path / "out/plain.png") is None
    assert read_array(tmp_path / "out/p3.jpg").shape == (32, 40, 3)


def test_write_array_takes_the_profile(tmp_path: Path) -> None:
    write_array(tmp_path / "x.png", np.zeros((4, 4, 4), np.uint8), icc_profile=SRGB)
    assert read_icc_profile(tmp_path / "x.png") == SRGB
    assert read_icc_profile(tmp_path / "absent.png") is None
